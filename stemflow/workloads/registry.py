"""Workload kinds by their scenario `type:`: what each one is, and the lookup.

Owns `WorkloadKind`, the one record of everything Stemflow must know about a kind of workload —
its scenario model, the rate cap it puts on its demand, its two stories in the simulator (over
the overlay and over direct TCP), its emulator roles (what the publisher sends, whether
subscribers answer), the result rows it writes and how it scales with the emulator's rate
scale — and the registry that the scenario, routing, simulator and emulator look kinds up in.
It leaves the stories themselves to the kinds' modules (`stemflow.workloads.bulk`, ...), and
the machinery they use to `stemflow.sim` and `stemflow.emu`.

Adding a workload is writing one module that builds a `WorkloadKind` and passes it to
`register`: every module of this package is loaded when a kind is first looked up, and a module
elsewhere registers its kinds when it is imported (before the scenario that names them is read).
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from stemflow.results import METRICS

if TYPE_CHECKING:
    import simpy

    from stemflow.emu.messages import Message
    from stemflow.network import NetworkState
    from stemflow.routing.demand import Demand
    from stemflow.scenario import Session, WorkloadSpec
    from stemflow.sim.model import World

W = TypeVar("W", bound="WorkloadSpec")
Process = Generator["simpy.Event", object, None]
Report = Mapping[str, Any]
"""A workload process's JSON report in the emulator (`stemflow.emu.workload`)."""


class UnknownWorkload(ValueError):
    """A scenario names a workload `type` nobody registered, or a kind is ill-formed."""


@dataclass(frozen=True)
class Sample:
    """One value an emulated session measured, before the run stamps it into a result row.

    `subscriber` is the client it was measured at, or None for the session as a whole (what its
    publisher measured)."""

    subscriber: str | None
    metric: str
    value: float
    t_s: float = 0.0


def _never(workload: Any) -> bool:
    return False


def _unscaled(workload: W, rate_scale: float, size_scale: float) -> W:
    return workload


@dataclass(frozen=True)
class WorkloadKind(Generic[W]):
    """One kind of workload, as every part of Stemflow sees it. Its module declares one."""

    spec: type[W]
    """The scenario model (a `stemflow.scenario.WorkloadSpec` whose `type` is a one-value
    `Literal`: the name a scenario gives, `type: bulk`)."""
    metrics: tuple[str, ...]
    """The metrics of its result rows, each defined in `stemflow.results.METRICS`; the drivers
    refuse a row of any other."""
    rate_cap_mbps: Callable[[Session, W, NetworkState], float]
    """Routing: the most its session can use (inf for a transfer that takes what it gets)."""
    simulate_overlay: Callable[[World, Session, W, Demand], Process]
    """Simulator: the session through the relays, from its start on; it records its rows."""
    simulate_direct: Callable[[World, Session, W, Demand], Process]
    """Simulator: the same session over direct TCP across the Internet (the baseline)."""
    schedule: Callable[[W], list[Message]]
    """Emulator: the messages its publisher sends, in order, with when to send each."""
    emu_rows: Callable[[Session, W, Report, list[Report]], Iterable[Sample]]
    """Emulator: its rows from the publisher's report and the subscribers' reports."""
    unary: bool = False
    """Emulator, Stemflow transport: publish each message on its own (`Client.publish`) rather
    than as one reliable stream (`Client.open_stream`)."""
    answered: Callable[[W], bool] = _never
    """Emulator: whether subscribers answer each message (request-response)."""
    scaled: Callable[[W, float, float], W] = _unscaled
    """The workload as emulated at `(rate_scale, size_scale)`: what is load on the links scales
    with the rate scale, what is an amount of data with the size scale, the rest not at all."""

    type: str = field(init=False)
    """The scenario's name for it, read from its model's `type: Literal[...]`."""

    def __post_init__(self) -> None:
        spec_type = self.spec.model_fields.get("type")
        names = typing.get_args(spec_type.annotation) if spec_type is not None else ()
        if (spec_type is None or typing.get_origin(spec_type.annotation) is not typing.Literal
                or len(names) != 1):
            raise UnknownWorkload(f"workload model {self.spec.__name__} needs a field "
                                  "`type: Literal[\"name\"]` that names it")
        object.__setattr__(self, "type", str(names[0]))

    def check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise UnknownWorkload(f"workload {self.type!r} records {metric!r}, which it does not "
                                  f"declare; its metrics: {', '.join(self.metrics)}")


_REGISTRY: dict[str, WorkloadKind[Any]] = {}
_BUILTINS_LOADED = False


def register(kind: WorkloadKind[W]) -> WorkloadKind[W]:
    """Make `kind` known under its `type`; returns it (a kind registered again replaces itself)."""
    undefined = [m for m in kind.metrics if m not in METRICS]
    if undefined:
        raise UnknownWorkload(f"workload {kind.type!r} declares undefined metrics {undefined}; "
                              "define each in stemflow.results.METRICS and docs/metrics.md")
    _REGISTRY[kind.type] = kind
    return kind


def workload_types() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_kind(name: str) -> WorkloadKind[Any]:
    """The kind a scenario names `type: name`."""
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownWorkload(f"unknown workload {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def kind_of(workload: WorkloadSpec) -> WorkloadKind[Any]:
    """The kind of a validated workload."""
    return get_kind(workload.type)


def validate_workload(data: Mapping[str, Any]) -> WorkloadSpec:
    """A scenario's `workload:` mapping as its kind's model; errors say which types exist."""
    name = data.get("type")
    if name is None:
        raise ValueError(f"type: required field is missing; one of {', '.join(workload_types())}")
    try:
        kind = get_kind(str(name))
    except UnknownWorkload as e:
        raise ValueError(f"type: {e}") from None
    return kind.spec.model_validate(data)


def subscriber_label(session: Session, subscriber: str | None) -> str:
    """The `session` column of a row measured at `subscriber`: the session's id when it has one
    subscriber (or for the session as a whole), else `session/subscriber`."""
    if subscriber is None or len(session.subscribers) == 1:
        return session.id
    return f"{session.id}/{subscriber}"


def _load_builtins() -> None:
    """Import every module of this package once: each registers the kind it declares."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # first: a module that looks a kind up while loading must not recurse
    package = importlib.import_module(__package__)
    try:
        for m in pkgutil.iter_modules(package.__path__):
            if m.name != "registry":
                importlib.import_module(f"{__package__}.{m.name}")
    except BaseException:
        _BUILTINS_LOADED = False
        raise
