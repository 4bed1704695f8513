"""The video workload: a live video broadcast, frames sized by a trace of a real encoder.

Owns the video kind: its scenario model (`type: video`: bitrate, frame rate, GOP, the frame-size
trace, the deadline), its frames (sizes from the trace, key frames every `gop_frames`, scaled
to the bitrate), what a viewer sees of them (a frame is shown if it and every frame since the
last key frame arrived; freezes as webrtc-stats defines them, as apps/broadcast/qoe.js counts
them in the browser), its simulated stories through the relays and over direct TCP, its
emulated roles (one live message per frame) and its rows: per-viewer frame delay, deadline
misses and freeze ratio, and the source datacenter's egress. Links, routes and the fluid model
are `stemflow.sim`'s; sending and receiving are `stemflow.emu`'s.

Traces live in `stemflow/workloads/traces/` as CSV (`sequence,bytes,key,encode_ms`), written by
`benchmarks/broadcast.py --record-trace` from the browser broadcaster's VP8 encoder.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from stemflow.emu.messages import HEADER, Message
from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.scenario import Positive, Session, WorkloadSpec
from stemflow.sim import latency
from stemflow.sim.model import SessionClosed, World
from stemflow.sim.transport import transfer_s
from stemflow.sim.workloads import DirectFlow, OverlayFlow, open_session, pick_path, record
from stemflow.workloads.registry import Process, Report, Sample, WorkloadKind, register
from stemflow.workloads.stream import frame_queue_s

TRACES = Path(__file__).parent / "traces"
DEFAULT_TRACE = "vp8-640x360-fake-camera"
"""Recorded from the broadcaster page (apps/broadcast/) on Chromium's fake camera, VP8 at
640x360, 30 frames/s, a key frame every 30 (docs/broadcast.md)."""
FREEZE_MEAN_FRAMES = 30
"""As qoe.js: the mean frame interval is taken over the last 30 intervals (a second at 30/s)."""
FREEZE_SLACK_S = 0.150
"""webrtc-stats' freeze: an interval over max(3 x mean, mean + 150 ms)."""


class VideoWorkload(WorkloadSpec):
    """A live video: `frame_rate` frames a second at `bitrate` for `duration`, a key frame every
    `gop_frames`, frame sizes shaped by `trace`."""

    type: Literal["video"]
    """`video`."""
    bitrate_mbps: Positive
    """Mean bitrate of the video (the trace's sizes are scaled to it)."""
    duration_s: Positive
    """How long the broadcast runs."""
    frame_rate: Positive = 30.0
    """Frames per second."""
    gop_frames: Annotated[int, Field(ge=1)] = 300
    """Frames from one key frame to the next (the broadcaster's default: 10 s at 30/s)."""
    trace: str = DEFAULT_TRACE
    """A trace in stemflow/workloads/traces/ by name, or a path to a CSV of the same columns."""
    deadline_ms: Positive = 400.0
    """A frame shown later than this after capture counts as missed."""

    @field_validator("trace")
    @classmethod
    def _trace_exists(cls, v: str) -> str:
        path = trace_path(v)
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in TRACES.glob("*.csv")))
            raise ValueError(f"no frame-size trace {v!r} (looked for {path}); shipped: {known}")
        return v

    @property
    def frame_interval_ms(self) -> float:
        return 1e3 / self.frame_rate

    @property
    def frames(self) -> int:
        return int(math.ceil(self.duration_s * self.frame_rate - 1e-9))


def trace_path(name: str) -> Path:
    p = Path(name)
    return p if p.suffix == ".csv" else TRACES / f"{name}.csv"


@functools.cache
def read_trace(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The key-frame sizes and the delta-frame sizes of a trace, in the order recorded."""
    keys: list[int] = []
    deltas: list[int] = []
    with trace_path(name).open(newline="") as f:
        for row in csv.DictReader(f):
            (keys if row["key"] == "1" else deltas).append(int(row["bytes"]))
    if not keys or not deltas:
        raise ValueError(f"trace {name}: needs key frames and delta frames")
    return tuple(keys), tuple(deltas)


def frame_sizes(w: VideoWorkload) -> list[int]:
    """Each frame's size: the trace's key frames every `gop_frames` and its delta frames between,
    both taken in recorded order (cycling), scaled so that the video's mean rate is its bitrate."""
    keys, deltas = read_trace(w.trace)
    raw = [keys[(k // w.gop_frames) % len(keys)] if k % w.gop_frames == 0 else deltas[k % len(deltas)]
           for k in range(w.frames)]
    scale = w.bitrate_mbps * 1e6 / 8 * w.frames / w.frame_rate / sum(raw)
    return [max(HEADER.size, round(b * scale)) for b in raw]


def is_key(w: VideoWorkload, frame: int) -> bool:
    return frame % w.gop_frames == 0


def shown_s(w: VideoWorkload, arrival_s: Sequence[float]) -> list[float]:
    """When each frame a viewer can decode is shown: in order, at its arrival or right after the
    frame before; a frame that never arrived (inf) hides every frame up to the next key frame."""
    shown: list[float] = []
    decodable = False
    last = -math.inf
    for k, t in enumerate(arrival_s):
        if is_key(w, k):
            decodable = True
        if not math.isfinite(t):
            decodable = False
        if decodable:
            last = max(last, t)
            shown.append(last)
    return shown


def freeze_ratio(shown: Sequence[float], frame_interval_s: float) -> float:
    """Time in freezes (webrtc-stats: intervals over max(3 x mean, mean + 150 ms), the mean over
    the last FREEZE_MEAN_FRAMES intervals) over the time from the first frame shown to the last
    one due. No frame shown: 1 (frozen throughout)."""
    if not shown:
        return 1.0
    frozen = 0.0
    recent: list[float] = []
    for a, b in zip(shown, shown[1:], strict=False):
        gap = b - a
        if len(recent) >= 3:
            mean = sum(recent) / len(recent)
            if gap > max(3 * mean, mean + FREEZE_SLACK_S):
                frozen += gap
        recent.append(gap)
        del recent[:-FREEZE_MEAN_FRAMES]
    span = max(shown[-1] - shown[0], frame_interval_s)
    return min(1.0, frozen / span)


def _viewer_rows(world: World, s: Session, w: VideoWorkload, sub: str, t0: float,
                 arrival: list[float]) -> None:
    captures = [t0 + k / w.frame_rate for k in range(w.frames)]
    shown = shown_s(w, arrival)
    missed = sum(1 for a, c in zip(arrival, captures, strict=True) if not (a - c) * 1e3 <= w.deadline_ms)
    record(world, s, sub, "deadline_miss_ratio", missed / w.frames, 0.0)
    record(world, s, sub, "freeze_ratio", freeze_ratio(shown, 1 / w.frame_rate), 0.0)


def rate_cap_mbps(session: Session, w: VideoWorkload, net: NetworkState) -> float:
    return w.bitrate_mbps


# -- simulated -----------------------------------------------------------------------------------


def overlay(world: World, s: Session, w: VideoWorkload, demand: Demand) -> Process:
    env, network, relay_ms = world.env, world.network, world.scenario.relay.processing_delay_ms
    t0 = env.now
    sizes = frame_sizes(w)
    yield from open_session(world, s, demand, sizes[0])
    t_ready = env.now
    flow = OverlayFlow(world, s, float(sum(sizes)), w.bitrate_mbps)
    transfer = flow.start()
    source = world.net.clients[s.publisher].datacenter
    share = flow.route.hop_share if flow.route else {}
    egress = sum(v for (a, _), v in share.items() if a == source)
    record(world, s, None, "source_egress_mbps", w.bitrate_mbps * egress, t0)
    pub_conn = network.access[s.publisher]
    arrival: dict[str, list[float]] = {sub: [] for sub in s.subscribers}
    for k, size in enumerate(sizes):
        t_k = t0 + k / w.frame_rate
        if t_k > env.now:
            yield env.timeout(t_k - env.now)
        at_relay = t_k + latency.access_s(pub_conn, size)
        depart = max(at_relay, t_ready) + frame_queue_s(flow, w, t_ready, env.now)
        for sub in s.subscribers:
            hops = pick_path(world, flow.route.paths.get(world.net.clients[sub].datacenter, ())
                             if flow.route else ())
            a = math.inf if hops is None else (
                depart + latency.overlay_s(network, hops, size, relay_ms)
                + latency.access_s(network.access[sub], size))
            arrival[sub].append(a)
            if math.isfinite(a):
                record(world, s, sub, "frame_delay_ms", (a - t_k) * 1e3, t_k)
    yield transfer.done
    flow.finish()
    world.control.send(SessionClosed(s.id))
    for sub in s.subscribers:
        _viewer_rows(world, s, w, sub, t0, arrival[sub])


def direct(world: World, s: Session, w: VideoWorkload, demand: Demand) -> Process:
    """Unicast fan-out from the source: one TCP connection per viewer over the Internet path."""
    record(world, s, None, "source_egress_mbps", w.bitrate_mbps * len(s.subscribers), world.env.now)
    done = [world.env.process(_direct_to(world, s, w, sub)) for sub in s.subscribers]
    yield world.env.all_of(done)


def _direct_to(world: World, s: Session, w: VideoWorkload, sub: str) -> Process:
    env = world.env
    t0 = env.now
    sizes = frame_sizes(w)
    flow = DirectFlow(world, s.publisher, sub, float(sum(sizes)), w.bitrate_mbps)
    yield env.timeout(flow.conn.handshake_s)
    t_ready = env.now
    transfer = flow.start()
    arrival: list[float] = []
    for k, size in enumerate(sizes):
        t_k = t0 + k / w.frame_rate
        if t_k > env.now:
            yield env.timeout(t_k - env.now)
        depart = max(t_k, t_ready) + frame_queue_s(flow, w, t_ready, env.now)
        a = depart + flow.conn.rtt_ms / 2e3 + transfer_s(size, flow.conn.steady_mbps)
        arrival.append(a)
        record(world, s, sub, "frame_delay_ms", (a - t_k) * 1e3, t_k)
    yield transfer.done
    _viewer_rows(world, s, w, sub, t0, arrival)


# -- emulated ------------------------------------------------------------------------------------


def schedule(w: VideoWorkload) -> list[Message]:
    """One message per frame, of the frame's size, due at its capture instant."""
    return [Message(k, size, k / w.frame_rate) for k, size in enumerate(frame_sizes(w))]


def emu_rows(s: Session, w: VideoWorkload, pub: Report, subs: list[Report]) -> list[Sample]:
    """Per viewer, from its receipts (sequence numbers and delays): each frame's delay, the share
    of frames late or never delivered, and the freeze ratio of what it could show. The source's
    egress is the emulator's own row (`stemflow.emu.run.egress_rows`: bytes on the delay lines
    out of the source datacenter), since only the links see every copy."""
    out = []
    for sub in subs:
        arrival = [math.inf] * w.frames
        for seq, d in zip(sub["seqs"], sub["delays_ms"], strict=True):
            if seq < w.frames:
                arrival[seq] = seq / w.frame_rate + d / 1e3
        out += [Sample(sub["subscriber"], "frame_delay_ms", (a - k / w.frame_rate) * 1e3, k / w.frame_rate)
                for k, a in enumerate(arrival) if math.isfinite(a)]
        late = sum(1 for k, a in enumerate(arrival) if not (a - k / w.frame_rate) * 1e3 <= w.deadline_ms)
        out.append(Sample(sub["subscriber"], "deadline_miss_ratio", late / w.frames))
        frozen = freeze_ratio(shown_s(w, arrival), 1 / w.frame_rate)
        out.append(Sample(sub["subscriber"], "freeze_ratio", frozen))
    return out


def scaled(w: VideoWorkload, rate_scale: float, size_scale: float) -> VideoWorkload:
    """As a stream: the bitrate is load on the links; frames keep their timing and deadline."""
    return w.model_copy(update={"bitrate_mbps": w.bitrate_mbps * rate_scale})


KIND = register(WorkloadKind(
    spec=VideoWorkload,
    metrics=("frame_delay_ms", "deadline_miss_ratio", "freeze_ratio", "source_egress_mbps"),
    rate_cap_mbps=rate_cap_mbps, simulate_overlay=overlay, simulate_direct=direct,
    schedule=schedule, emu_rows=emu_rows, scaled=scaled))
