"""docs/benchmarks.md as a page of sections, one per benchmark script.

Owns the replacement of one script's section, so scripts run at different times (and by
different people) never overwrite each other's numbers. Scripts import it as `docpage` (they run
as `python benchmarks/<name>.py`, which puts this folder on the path).
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, text: str, doc: Path = DOC) -> None:
    """Replace the section that starts with `heading` (up to the next '## '), or append it.

    The file is re-read right before writing, so another script's fresh section stays.
    """
    page = doc.read_text() if doc.exists() else "# Benchmarks\n"
    text = text.rstrip("\n") + "\n"
    start = page.find(heading + "\n")
    if start < 0:
        page = page.rstrip("\n") + "\n\n" + text
    else:
        end = page.find("\n## ", start + len(heading))
        page = page[:start] + text + ("" if end < 0 else "\n" + page[end + 1:])
    doc.write_text(page)
