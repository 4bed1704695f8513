"""The look and the files of every figure Stemflow writes, so that all of them read alike in a paper.

Owns the figure sizes (a column and a page of a two-column paper), the font sizes that stay
readable at those sizes, the formats every figure is written in (PNG for a quick look, PDF with
its fonts embedded for a paper, SVG for the web), reproducible file contents, and the one way a
published value is drawn beside ours. What a figure shows is its caller's business
(`stemflow.sim.report`, `stemflow.analysis.figures`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

COLUMN_IN = 3.5
"""Width of one column of a two-column IEEE paper (3.5 in): the size a figure is read at."""
PAGE_IN = 7.16
"""Width of both columns of that paper (7.16 in), for figures with several panels."""
FORMATS = ("png", "pdf", "svg")
DPI = 200
"""A 3.5 in figure at 200 dpi is 700 px wide: sharp on screen, small on disk."""
PAPER_STYLE = {"color": "k", "marker": "_", "s": 260, "linewidths": 2.2, "zorder": 4}
"""How a published value is drawn on a bar or point of ours: a black bar-wide tick."""

matplotlib.rcParams.update({
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 8,
    "pdf.fonttype": 42,  # TrueType fonts embedded in the PDF (IEEE PDF eXpress refuses Type 3)
    "ps.fonttype": 42,
    "svg.hashsalt": "stemflow",  # stable element ids: regenerated SVGs diff cleanly
    "axes.spines.top": False, "axes.spines.right": False,
})

STRATEGY_COLORS = {"direct": "0.55", "shortest": "C1", "widest": "C2", "multipath": "C3", "multicast": "C4"}
"""One colour per strategy in every figure (direct, the baseline, in grey); others take the rest."""
_OTHER_COLORS = ("C5", "C6", "C8", "C9", "C0", "C7")


def strategy_color(strategy: str) -> str:
    if strategy in STRATEGY_COLORS:
        return STRATEGY_COLORS[strategy]
    return _OTHER_COLORS[sum(map(ord, strategy)) % len(_OTHER_COLORS)]


def figure(width_in: float = COLUMN_IN, height_in: float = 2.4) -> Figure:
    """A figure on the Agg canvas (no pyplot state: safe in worker processes and tests)."""
    return Figure(figsize=(width_in, height_in), layout="constrained")


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem.png`, `stem.pdf` and `stem.svg`; no dates inside, so a figure gives the same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in FORMATS]
    for p in paths:
        metadata = {"png": None, "pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}}[
            p.suffix[1:]]
        fig.savefig(p, dpi=DPI, bbox_inches="tight", metadata=metadata)
    return paths
