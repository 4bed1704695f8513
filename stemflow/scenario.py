"""The scenario: what a researcher writes in YAML, validated into one immutable model.

Owns the schema of `scenarios/*.yaml`, unit parsing of its fields, the expansion of meshes given
as a matrix or a CSV, and every check that can be made before anything runs. It leaves the graph
to `stemflow.network` and all decisions to `stemflow.routing`. A user mistake becomes a
`ScenarioError` naming the file, the field path, what was expected and what was found.

Quantities accept a unit string under the plain name (``bandwidth: 5 Gbit/s``) or a number under
the unit-suffixed name (``bandwidth_mbps: 5000``); see `stemflow.units` for the unit system.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import re
from collections.abc import Callable
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import networkx as nx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from stemflow import units
from stemflow.workloads.registry import validate_workload

# ---------------------------------------------------------------------------------------------
# Errors


class ScenarioError(ValueError):
    """A scenario that cannot be used, with where and why in words a user can act on."""

    def __init__(self, source: str, field: str, problem: str):
        self.source, self.field, self.problem = source, field, problem
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


# ---------------------------------------------------------------------------------------------
# Base model with unit-suffixed quantities

Parser = Callable[[Any], float]
_QUANTITY_SUFFIX: dict[str, Parser] = {
    "_mbps": units.parse_rate_mbps,
    "_bytes": units.parse_size_bytes,
    "_ms": units.parse_time_ms,
    "_s": units.parse_duration_s,
}


NOT_QUANTITIES = frozenset({"rate_per_s"})
"""Names that end in a unit suffix without being that quantity: `rate_per_s` is a count per second,
not a duration, so it takes a bare number only."""


class _Model(BaseModel):
    """Strict, frozen model: unknown keys are errors, and `x: "5 Gbit/s"` fills `x_mbps`."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _quantities(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name in cls.model_fields:
            if name in NOT_QUANTITIES:
                continue
            for suffix, parse in _QUANTITY_SUFFIX.items():
                if not name.endswith(suffix):
                    continue
                plain = name[: -len(suffix)]
                if plain in out and plain not in cls.model_fields:
                    if name in out:
                        raise ValueError(f"give either {plain!r} or {name!r}, not both")
                    out[name] = _parse_field(parse, out.pop(plain), plain)
                elif _is_quantity(out.get(name)):
                    out[name] = _parse_field(parse, out[name], name, bare_ok=True)
                break
        return out


def _is_quantity(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _parse_field(parse: Parser, value: Any, field: str, bare_ok: bool = False) -> float:
    """Parse a quantity; a failure names the field ("bandwidth: expected a rate ...").

    Under a unit-suffixed name (`rtt_ms: 5`) a bare number is in that unit; under the plain name
    (`rtt: 5 ms`) the unit must be written. Either way the value is checked to be finite and sane.
    """
    try:
        return parse(value, bare_ok=bare_ok)
    except units.UnitError as e:
        raise ValueError(f"{field}: {e}") from None


def _probability(v: Any) -> float:
    try:
        p = units.parse_probability(v)
    except units.UnitError as e:
        raise ValueError(str(e)) from None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"expected a probability in [0, 1), found {v!r}")
    return p


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


# ---------------------------------------------------------------------------------------------
# Places and links


class Datacenter(_Model):
    """A datacenter that hosts one relay. `region` keys it into the measured data sets."""

    name: str
    """Unique name; links, clients and relays refer to the datacenter by it."""
    region: str | None = None
    """Key into the measured data sets (`mesh.rtt_csv`, `mesh.bandwidth_csv`); default: `name`."""
    location: tuple[float, float] | None = None
    """(latitude, longitude), for maps only."""

    @property
    def data_key(self) -> str:
        return self.region or self.name


class PathSpec(_Model):
    """A network path's configured state: its RTT, bottleneck bandwidth and random loss.

    An RTT of 0 is rejected: no path between two machines has one, and the TCP models divide by it.
    """

    rtt_ms: Positive
    """Round-trip time of the path."""
    bandwidth_mbps: Positive
    """Bottleneck bandwidth of the path."""
    loss: float = 0.0
    """Random packet loss probability, 0 to below 1 (`0.001` or `0.1%`)."""

    _p = field_validator("loss", mode="before")(_probability)


class LinkSpec(PathSpec):
    """An overlay link between two datacenters; symmetric unless `directed`."""

    a: str
    """Datacenter at one end."""
    b: str
    """Datacenter at the other end."""
    directed: bool = False
    """`true`: the link carries traffic from `a` to `b` only (give the reverse separately)."""


class MeshSpec(_Model):
    """A full mesh among the datacenters, from measured CSVs or a matrix; `links` override it.

    CSV paths are relative to the scenario file. RTT CSVs are symmetric (src,dst,rtt_ms);
    bandwidth CSVs are directed (src,dst,gbps), as in the shipped GCP data sets.
    """

    rtt_csv: str | None = None
    """CSV of measured RTTs (src,dst,rtt_ms; symmetric), relative to the scenario file."""
    rtt_ms: dict[str, dict[str, float]] | None = None
    """RTT matrix instead of a CSV: `{dc: {dc: ms}}`."""
    bandwidth_csv: str | None = None
    """CSV of measured bandwidths (src,dst,gbps; directed), relative to the scenario file."""
    bandwidth_scale: Positive = 1.0
    """Factor applied to every bandwidth read from `bandwidth_csv`."""
    bandwidth_mbps: float | dict[str, dict[str, float]] | None = None
    """One rate for every pair, or a matrix `{dc: {dc: Mbit/s}}`, instead of a CSV."""
    loss: float = 0.0
    """Random loss on every mesh link."""

    _p = field_validator("loss", mode="before")(_probability)

    @model_validator(mode="after")
    def _one_rtt_source(self) -> MeshSpec:
        if (self.rtt_csv is None) == (self.rtt_ms is None):
            raise ValueError("give exactly one of 'rtt_csv' or 'rtt_ms' (a matrix)")
        if self.bandwidth_csv is None and self.bandwidth_mbps is None:
            raise ValueError("give 'bandwidth_csv' or 'bandwidth' (a rate or a matrix)")
        return self


class AccessSpec(PathSpec):
    """The hop between a client and the relay of its datacenter (same region: short, fat)."""

    rtt_ms: Positive = 1.0
    """RTT between the client and its relay."""
    bandwidth_mbps: Positive = 10_000.0
    """Bandwidth between the client and its relay."""


class Client(_Model):
    """An application endpoint attached to the relay of one datacenter."""

    name: str
    """Unique name; sessions and Internet paths refer to the client by it."""
    datacenter: str
    """The datacenter whose relay the client connects to."""
    access: AccessSpec = AccessSpec()
    """The hop between the client and that relay."""


class InternetPath(PathSpec):
    """The public-Internet path between two clients: what a direct TCP connection uses."""

    a: str
    """Client at one end."""
    b: str
    """Client at the other end."""


# ---------------------------------------------------------------------------------------------
# Transport and relays


class CongestionControl(StrEnum):
    RENO = "reno"
    CUBIC = "cubic"
    BBR = "bbr"


class TcpSettings(_Model):
    """TCP as every connection uses it, client or relay; the window cap explains Table I."""

    congestion_control: CongestionControl = CongestionControl.CUBIC
    """Congestion control of every connection, client or relay."""
    rwnd_bytes: Positive = 6 * 2**20
    """Window cap of every connection (Linux `tcp_rmem` max default: 6 MiB)."""
    mss_bytes: Positive = 1448.0
    """Maximum segment size (1500 B MTU - 40 B IP/TCP headers - 12 B timestamps)."""


class RelaySettings(_Model):
    """How relays connect to each other and how long they hold a frame."""

    parallel: Annotated[int, Field(ge=1, le=256)] = 4
    """Persistent TCP connections per pair of relays (P), 1 to 256."""
    processing_delay_ms: NonNegative = 0.05
    """Time a relay holds a frame before forwarding it."""


class ControllerSettings(_Model):
    """Where the controller runs, which sets what a session's set-up costs.

    A relay forwards a new session once the controller's table for it has arrived: the relay
    reports its publisher's interest, the controller plans, and pushes tables. Both drivers
    charge that exchange over each relay's round trip to the controller: the shortest-RTT path
    over the overlay's links from the relay's datacenter to the controller's (0 for the relay
    beside it; `stemflow.controller_site`).
    """

    datacenter: str | None = None
    """Datacenter the controller runs in; default: none, a controller beside every relay (a
    session's set-up then costs no round trip)."""


class SecuritySettings(_Model):
    """Whether the overlay runs with its credentials, so that their cost shows in the results.

    Emulation only: `stemflow emu` makes a fresh CA, certificates and token keys per run in a
    temporary directory and starts every process with them; the simulator refuses a scenario
    that switches either on, because its fluid model has no per-byte CPU cost for TLS to add to
    (see docs/security.md). Both off (default): plain TCP, no tokens, as before.
    """

    tls: bool = False
    """Mutual TLS among the relays and with the controller, TLS on every client connection."""
    tokens: bool = False
    """Relays check a signed token on each client connection; each client's token allows
    publishing and subscribing to its own sessions' topics only."""

    @property
    def enabled(self) -> bool:
        return self.tls or self.tokens


class RoutingSettings(_Model):
    """How the optimizing strategies trade exactness for plan time (`RoutingOptions.fairness`).

    `exact`: max-min fair over every candidate route, however long it takes; `fast`: a few
    candidates per pair, two fair levels, then throughput; `auto` (default): exact while the
    problem is small enough to plan in well under a second, fast above that.
    """

    fairness: Literal["exact", "fast", "auto"] = "auto"
    """`exact`, `fast` or `auto` (see above)."""


# ---------------------------------------------------------------------------------------------
# Sessions and workloads


class WorkloadSpec(_Model):
    """What a session's publisher does. Each kind is a subclass declared by its module in
    `stemflow.workloads`, whose `type` names it (`type: bulk`); see `stemflow.workloads.registry`."""

    type: str


def _workload(data: Any, handler: ValidatorFunctionWrapHandler) -> WorkloadSpec:
    """A `workload:` mapping as the model of the kind its `type` names, looked up when read."""
    if isinstance(data, WorkloadSpec):
        return handler(data)
    if not isinstance(data, dict):
        raise ValueError("expected a mapping that names its type, like {type: bulk, size: 1 GB}")
    return validate_workload(data)


Workload = Annotated[SerializeAsAny[WorkloadSpec], WrapValidator(_workload)]


class Priority(StrEnum):
    """Scheduling class: delay-sensitive sessions are placed and queued first."""

    DELAY_SENSITIVE = "delay-sensitive"
    BULK = "bulk"


class Session(_Model):
    """One publisher to one (unicast) or several (multicast) subscribers."""

    id: str
    """Unique name of the session, used in results."""
    publisher: str
    """The client that publishes."""
    subscribers: list[str]
    """The clients that receive; one for unicast, one or more for multicast."""
    workload: Workload
    """What the publisher sends: a `bulk`, `messages`, `stream` or `video` workload (below)."""
    kind: Literal["unicast", "multicast"] | None = None
    """`unicast` or `multicast`; default: unicast with one subscriber, multicast with more."""
    priority: Priority = Priority.BULK
    """`delay-sensitive` sessions are placed and queued first; `bulk` is the default."""
    latency_budget_ms: Positive | None = None
    """Routes whose latency exceeds this are not used."""
    start_s: NonNegative = 0.0
    """When the session starts, from the start of the run."""

    @model_validator(mode="after")
    def _kind(self) -> Session:
        if not self.subscribers:
            raise ValueError(f"subscribers: a {self.kind or ''} session needs at least one subscriber"
                             .replace("a  ", "a "))
        if len(set(self.subscribers)) != len(self.subscribers):
            raise ValueError(f"subscribers: a client is listed twice: {self.subscribers}")
        if self.publisher in self.subscribers:
            raise ValueError(f"subscribers: the publisher {self.publisher!r} is also a subscriber")
        implied = "unicast" if len(self.subscribers) == 1 else "multicast"
        if self.kind == "unicast" and implied == "multicast":
            raise ValueError(f"kind: a unicast session has one subscriber, found {len(self.subscribers)}")
        if self.kind is None:
            object.__setattr__(self, "kind", implied)
        return self

    @property
    def is_multicast(self) -> bool:
        return self.kind == "multicast"


# ---------------------------------------------------------------------------------------------
# Faults (what each kind means, and the checks across the scenario, are `stemflow.faults`')


class FaultSpec(_Model):
    """Something that goes wrong at a time of the run, and when it is over."""

    type: str
    at_s: NonNegative
    """When the fault strikes, from the start of the run."""
    until_s: NonNegative | None = None
    """When it is over (the relay restarts, the link comes back, ...); default: never."""


class RelayKill(FaultSpec):
    """The relay process of a datacenter is killed (SIGKILL), and restarted at `until` if given."""

    type: Literal["relay-kill"]
    """`relay-kill`."""
    relay: str
    """Datacenter whose relay dies."""


class LinkDown(FaultSpec):
    """The overlay link between two datacenters carries nothing (both directions) until `until`."""

    type: Literal["link-down"]
    """`link-down`."""
    link: tuple[str, str]
    """The two datacenters at its ends: `[us-east1, us-west1]`."""


class LinkDegrade(FaultSpec):
    """The overlay link between two datacenters (both directions) gets a lower bandwidth, a longer
    RTT and/or random loss until `until`; what is not given keeps its configured value."""

    type: Literal["link-degrade"]
    """`link-degrade`."""
    link: tuple[str, str]
    """The two datacenters at its ends: `[us-east1, us-west1]`."""
    bandwidth_mbps: Positive | None = None
    """Bottleneck bandwidth while degraded."""
    rtt_ms: Positive | None = None
    """Round-trip time while degraded."""
    loss: float | None = None
    """Random loss probability while degraded, 0 to below 1."""

    @field_validator("loss", mode="before")
    @classmethod
    def _p(cls, v: Any) -> float | None:
        return None if v is None else _probability(v)

    @model_validator(mode="after")
    def _something(self) -> LinkDegrade:
        if self.bandwidth_mbps is None and self.rtt_ms is None and self.loss is None:
            raise ValueError("a link-degrade needs at least one of 'bandwidth', 'rtt' or 'loss'")
        return self


class ControllerStop(FaultSpec):
    """The controller process is stopped, and started afresh (no state kept) at `until` if given."""

    type: Literal["controller-stop"]
    """`controller-stop`."""


class Partition(FaultSpec):
    """The network between `datacenters` and the rest is cut (overlay links and, when the
    controller runs on the other side, the relays' control connections) until `until`."""

    type: Literal["partition"]
    """`partition`."""
    datacenters: list[str]
    """The datacenters on one side of the cut; the others are on the other side."""


FAULT_KINDS: dict[str, type[FaultSpec]] = {
    "relay-kill": RelayKill, "link-down": LinkDown, "link-degrade": LinkDegrade,
    "controller-stop": ControllerStop, "partition": Partition}
"""Fault kinds by their `type:`."""


def _fault(data: Any, handler: ValidatorFunctionWrapHandler) -> FaultSpec:
    """A `faults:` item as the model of the kind its `type` names."""
    if isinstance(data, FaultSpec):
        return data
    if not isinstance(data, dict):
        raise ValueError("expected a mapping that names its type, like {type: relay-kill, at: 5 s, "
                         "relay: us-west1}")
    name = data.get("type")
    if name is None:
        raise ValueError(f"type: required field is missing; one of {', '.join(FAULT_KINDS)}")
    if name not in FAULT_KINDS:
        raise ValueError(f"type: unknown fault type {name!r}{_suggest(str(name), list(FAULT_KINDS))}")
    return FAULT_KINDS[name].model_validate(data)


Fault = Annotated[RelayKill | LinkDown | LinkDegrade | ControllerStop | Partition, WrapValidator(_fault)]


# ---------------------------------------------------------------------------------------------
# Published numbers to compare against


class ReferenceValue(_Model):
    """One number a paper reports for a session under a strategy, to print beside the simulated one.

    `fitted_by` names the scenario field (in `--set` grammar) whose value was chosen so that the
    model reproduces this number; such a row confirms the fit, it does not test the model.
    """

    strategy: str
    """Strategy whose result the number is."""
    session: str
    """Session the number is for."""
    metric: str
    """Metric name (see docs/metrics.md), e.g. `throughput_mbps`, `rr_latency_ms`."""
    value: float
    """The published number, in the metric's unit."""
    fitted_by: str | None = None
    """Field (in `--set` grammar) fitted to make the model reproduce this number; default: none, the
    model's own prediction."""


class Reference(_Model):
    """What a reproduced paper measured in this scenario, and where it says so."""

    source: str
    """Where the numbers are published (authors, title, venue, table)."""
    values: list[ReferenceValue]
    """The published numbers."""


# ---------------------------------------------------------------------------------------------
# The scenario


class Scenario(_Model):
    """Everything a run needs; `links` holds the expanded, validated overlay (mesh included)."""

    name: str
    """Name of the scenario; results go to `results/<name>/`."""
    description: str = ""
    """Free text."""
    seed: int = 1
    """Random seed of the run (a run is deterministic for a seed)."""
    datacenters: list[Datacenter]
    """The datacenters, one relay each."""
    mesh: MeshSpec | None = None
    """A full mesh among the datacenters from measured data or a matrix; `links` override it."""
    links: list[LinkSpec] = []
    """Overlay links between datacenters."""
    clients: list[Client]
    """Application endpoints."""
    internet: list[InternetPath] = []
    """Public-Internet paths between clients, for direct TCP; default: each client's access hop joined by
    the lowest-RTT overlay route between their datacenters."""
    tcp: TcpSettings = TcpSettings()
    """TCP settings of every connection."""
    relay: RelaySettings = RelaySettings()
    """Relay settings."""
    routing: RoutingSettings = RoutingSettings()
    """Routing settings."""
    controller: ControllerSettings = ControllerSettings()
    """Where the controller runs."""
    security: SecuritySettings = SecuritySettings()
    """TLS and client tokens in the emulation (the simulator refuses them)."""
    sessions: list[Session]
    """The sessions to run."""
    strategies: list[str] = ["direct", "shortest", "widest", "multipath"]
    """Routing strategies to compare, by name or `package.module:function`."""
    parameters: dict[str, float] = {}
    """Named model parameters of the simulator (see `stemflow.sim.params`)."""
    reference: Reference | None = None
    """Published numbers to print beside the simulated ones (see `stemflow sim`)."""
    faults: list[Fault] = []
    """What goes wrong during the run, and when (both drivers inject the same faults)."""

    source: str = Field(default="<memory>", exclude=True)
    base_dir: str = Field(default=".", exclude=True)

    @property
    def datacenter_names(self) -> list[str]:
        return [d.name for d in self.datacenters]

    def client(self, name: str) -> Client:
        return next(c for c in self.clients if c.name == name)

    def session(self, sid: str) -> Session:
        return next(s for s in self.sessions if s.id == sid)

    def digest(self) -> str:
        """Content hash of the validated scenario, for run manifests."""
        blob = self.model_dump_json(exclude={"source", "base_dir", "reference"}).encode()  # not an input
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_updates(self, updates: dict[str, Any]) -> Scenario:
        """A copy with dotted-path fields replaced, re-validated: the one override grammar.

        `relay.parallel: 8` sets a field; `links.*.loss: 0.001` sets it in every element of a list
        (`*` stands for each index); a quantity takes its plain name and a unit string
        (`tcp.rwnd: "8 MB"`) or its unit-suffixed name and a number (`tcp.rwnd_bytes: 8e6`);
        `parameters.NAME` may add a name. `stemflow sim --set` and every sweep use this.
        """
        data = self.model_dump(exclude={"source", "base_dir"})
        data.pop("mesh", None)  # links are already expanded
        for dotted, value in updates.items():
            for path in _override_paths(data, dotted, self.source):
                _override(data, path, value, dotted, self.source)
        return parse_scenario(data, source=self.source, base_dir=self.base_dir)


def parse_override(item: str) -> tuple[str, Any]:
    """`KEY=VALUE` as the command line gives it: VALUE is read as YAML (`8`, `1e-3`, `"8 MB"`, `[a, b]`)."""
    key, eq, text = item.partition("=")
    if not eq or not key.strip():
        raise ScenarioError("--set", "", f"expected KEY=VALUE (e.g. relay.parallel=8), found {item!r}")
    return key.strip(), parse_override_value(text)


def parse_override_value(text: str) -> Any:
    """A value as YAML reads it, except that `1e-3` is a number (YAML 1.1 would keep it as text)."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text.strip()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _override_paths(data: Any, dotted: str, source: str) -> list[list[str]]:
    """Every concrete path `dotted` stands for (`links.*.loss` -> links.0.loss, links.1.loss ...)."""
    paths: list[list[str]] = [[]]
    for part in dotted.split("."):
        if part != "*":
            paths = [[*p, part] for p in paths]
            continue
        nxt = []
        for p in paths:
            node = _walk(data, p, dotted, source)
            if not isinstance(node, list):
                raise ScenarioError(source, dotted, f"'*' stands for every element of a list, and "
                                                    f"{'.'.join(p) or 'the top'} is not a list")
            nxt += [[*p, str(i)] for i in range(len(node))]
        paths = nxt
    return paths


def _walk(data: Any, path: list[str], dotted: str, source: str) -> Any:
    node = data
    for i, part in enumerate(path):
        where = ".".join(path[:i]) or "the top"
        if isinstance(node, list):
            if not re.fullmatch(r"\d+", part):
                raise ScenarioError(source, dotted, f"{where} is a list: use an index (0, 1, ...) or '*', "
                                                    f"found {part!r}")
            if int(part) >= len(node):
                raise ScenarioError(source, dotted, f"{where} has {len(node)} elements, so no index {part}")
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                raise ScenarioError(source, dotted, f"no such field to update{_suggest(part, list(node))}")
            node = node[part]
        else:
            raise ScenarioError(source, dotted, f"{where} is a value, not a group of fields")
    return node


def _override(data: Any, path: list[str], value: Any, dotted: str, source: str) -> None:
    *parents, leaf = path
    node = _walk(data, parents, dotted, source)
    if isinstance(node, list):
        node[_walk_index(node, leaf, parents, dotted, source)] = value
        return
    if not isinstance(node, dict):
        raise ScenarioError(source, dotted, f"{'.'.join(parents)} is a value, not a group of fields")
    if leaf in node or parents == ["parameters"]:
        node[leaf] = value
        return
    suffixed = [leaf + suffix for suffix in _QUANTITY_SUFFIX if leaf + suffix in node]
    if not suffixed:
        raise ScenarioError(source, dotted, f"no such field to update{_suggest(leaf, list(node))}")
    del node[suffixed[0]]
    node[leaf] = value  # the model parses the unit string under the plain name


def _walk_index(node: list[Any], part: str, parents: list[str], dotted: str, source: str) -> int:
    _walk(node, [part], dotted, source)
    return int(part)


def _suggest(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f"; known here: {', '.join(sorted(known))}"


# ---------------------------------------------------------------------------------------------
# Loading


SHIPPED_PACKAGE = "stemflow.scenarios"
"""The package that carries the shipped scenarios (the repository's `scenarios/`) in the wheel."""


def shipped_scenarios() -> dict[str, Path]:
    """Name -> file of every scenario shipped with Stemflow (`table1-us-east-asia-east`, ...)."""
    root = Path(str(resources.files(SHIPPED_PACKAGE)))
    return {p.stem: p for p in sorted(root.glob("*.yaml"))}


def find_scenario(path: str | Path) -> Path:
    """The file itself when it exists; else the shipped scenario of that name.

    `scenarios/table1-us-east-asia-east.yaml`, `table1-us-east-asia-east.yaml` and
    `table1-us-east-asia-east` all find the shipped file after `pip install`, where there is no
    `scenarios/` folder; a name that is neither is a `ScenarioError` listing the shipped ones.
    """
    path = Path(path)
    if path.exists():
        return path
    shipped = shipped_scenarios()
    if path.suffix in ("", ".yaml") and path.stem in shipped:
        return shipped[path.stem]
    raise ScenarioError(str(path), "", f"no such file, and no shipped scenario of that name (shipped: "
                                       f"{', '.join(shipped)})")


def load_scenario(path: str | Path) -> Scenario:
    """Read, expand and validate a scenario file; raise `ScenarioError` on any user mistake.

    A path that does not exist may name a shipped scenario (`find_scenario`).
    """
    path = find_scenario(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(source, "", f"cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(source, "", "not a text file (a scenario is YAML text in UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(source, "", f"not valid YAML: {e}") from None
    return parse_scenario(data, source=source, base_dir=str(path.parent))


def parse_scenario(data: Any, source: str = "<memory>", base_dir: str = ".") -> Scenario:
    """Validate a scenario given as plain data (what YAML gives)."""
    if not isinstance(data, dict):
        raise ScenarioError(source, "", f"expected a mapping at the top, found {type(data).__name__}")
    data = dict(data)
    try:
        scenario = Scenario.model_validate({**data, "source": source, "base_dir": base_dir})
    except ValidationError as e:
        raise _from_validation(source, e) from None
    except units.UnitError as e:
        raise ScenarioError(source, "", str(e)) from None
    scenario = _expand_mesh(scenario)
    _check_references(scenario)
    from stemflow.faults import check_faults  # it reads the scenario model defined here

    check_faults(scenario)
    return scenario


def _from_validation(source: str, err: ValidationError) -> ScenarioError:
    """The one problem to show first: a misspelled key (with a suggestion) explains the rest."""
    errors = err.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    first = extra[0] if extra else errors[0]
    parts = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    found = first.get("input")
    msg = first["msg"].removeprefix("Value error, ")
    if m := re.match(r"^([a-z_]+): (.*)$", msg, re.S):  # a validator naming its field
        parts.append(m.group(1))
        msg = m.group(2)
        found = None
    loc = ".".join(parts)
    if first["type"] == "extra_forbidden":
        msg = f"unknown key{_key_suggestion(str(first['loc'][-1]), first['loc'][:-1], errors)}"
    elif first["type"] == "missing":
        msg = "required field is missing"
    elif found is not None and not isinstance(found, dict | list) and "found" not in msg:
        msg = f"{msg}; found {found!r}"
    others = len(errors) - 1 - sum(1 for e in errors if e is not first and _explained_by(e, first))
    more = f" (and {others} more problems)" if others > 0 else ""
    return ScenarioError(source, loc, msg + more)


def _explained_by(e: Any, extra: Any) -> bool:
    """A required field reported missing next to a misspelled key is the same mistake."""
    return (extra["type"] == "extra_forbidden" and e["type"] == "missing"
            and e["loc"][:len(extra["loc"]) - 1] == extra["loc"][:-1])


def _key_suggestion(key: str, parent: tuple[Any, ...], errors: list[Any]) -> str:
    """' (did you mean 'workload'?)': first among missing siblings, then among every schema key."""
    missing = [str(e["loc"][len(parent)]) for e in errors
               if e["type"] == "missing" and e["loc"][:len(parent)] == parent and len(e["loc"]) > len(parent)]
    for known in (missing, _schema_keys()):
        if close := difflib.get_close_matches(key, known, n=1, cutoff=0.6):
            return f" {key!r} (did you mean {close[0]!r}?)"
    return f" {key!r} (unknown keys are rejected; see docs/scenario.md for every field)"


def _schema_keys() -> list[str]:
    """Every key a scenario may use anywhere, plain quantity names included."""
    keys: set[str] = set()
    for model in _models():
        for name in model.model_fields:
            keys.add(name)
            keys.update(name.removesuffix(suffix) for suffix in _QUANTITY_SUFFIX if name.endswith(suffix))
    return sorted(keys - {"source", "base_dir"})


def _models() -> list[type[_Model]]:
    seen: list[type[_Model]] = []
    todo: list[type[_Model]] = [_Model]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def _read_csv(base_dir: str, rel: str, source: str, field: str) -> list[dict[str, str]]:
    path = Path(base_dir) / rel
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    except OSError as e:
        raise ScenarioError(source, field, f"cannot read {path}: {e.strerror}") from None
    return list(csv.DictReader(lines))


def _expand_mesh(s: Scenario) -> Scenario:
    """Turn `mesh` into explicit links among all datacenter pairs; explicit links win."""
    if s.mesh is None:
        return s
    m, keys = s.mesh, {d.data_key: d.name for d in s.datacenters}
    rtt: dict[frozenset[str], float] = {}
    if m.rtt_csv:
        for row in _read_csv(s.base_dir, m.rtt_csv, s.source, "mesh.rtt_csv"):
            rtt[frozenset((row["src"], row["dst"]))] = float(row["rtt_ms"])
    else:
        for a, row in (m.rtt_ms or {}).items():
            for b, v in row.items():
                rtt[frozenset((a, b))] = float(v)
    bw: dict[tuple[str, str], float] = {}
    if m.bandwidth_csv:
        for row in _read_csv(s.base_dir, m.bandwidth_csv, s.source, "mesh.bandwidth_csv"):
            bw[(row["src"], row["dst"])] = float(row["gbps"]) * 1e3 * m.bandwidth_scale
    elif isinstance(m.bandwidth_mbps, dict):
        for a, row in m.bandwidth_mbps.items():
            for b, v in row.items():
                bw[(a, b)] = bw[(b, a)] = float(v)
    explicit = {(ln.a, ln.b) for ln in s.links} | {(ln.b, ln.a) for ln in s.links if not ln.directed}
    links = list(s.links)
    for i, ka in enumerate(keys):
        for kb in list(keys)[i + 1:]:
            a, b = keys[ka], keys[kb]
            if (a, b) in explicit:
                continue
            key = frozenset((ka, kb))
            if key not in rtt:
                raise ScenarioError(s.source, "mesh", f"no RTT between {ka!r} and {kb!r} in the mesh data")
            for src, dst, ks, kd in ((a, b, ka, kb), (b, a, kb, ka)):
                if isinstance(m.bandwidth_mbps, float | int):
                    rate = float(m.bandwidth_mbps)
                elif (ks, kd) in bw:
                    rate = bw[(ks, kd)]
                else:
                    raise ScenarioError(s.source, "mesh",
                                        f"no bandwidth from {ks!r} to {kd!r} in the mesh data")
                try:
                    links.append(LinkSpec(a=src, b=dst, directed=True, rtt_ms=rtt[key],
                                          bandwidth_mbps=rate, loss=m.loss))
                except ValidationError as e:
                    problem = _from_validation(s.source, e)
                    raise ScenarioError(s.source, f"mesh ({ks} -> {kd}).{problem.field}",
                                        problem.problem) from None
    return s.model_copy(update={"links": links, "mesh": None})


def _check_references(s: Scenario) -> None:
    """Cross-field checks: every name refers to something, the overlay is connected."""
    src = s.source

    def unique(items: list[str], field: str) -> set[str]:
        seen: set[str] = set()
        for i, n in enumerate(items):
            if n in seen:
                raise ScenarioError(src, f"{field}.{i}.name", f"duplicate name {n!r}")
            seen.add(n)
        return seen

    dcs = unique(s.datacenter_names, "datacenters")
    if not dcs:
        raise ScenarioError(src, "datacenters", "at least one datacenter is needed")
    clients = unique([c.name for c in s.clients], "clients")
    if clash := dcs & clients:
        raise ScenarioError(src, "clients", f"names used by both a datacenter and a client: {sorted(clash)}")
    for i, ln in enumerate(s.links):
        for end in ("a", "b"):
            if getattr(ln, end) not in dcs:
                raise ScenarioError(src, f"links.{i}.{end}",
                                    f"unknown datacenter {getattr(ln, end)!r}; known: {sorted(dcs)}")
        if ln.a == ln.b:
            raise ScenarioError(src, f"links.{i}", f"a link from {ln.a!r} to itself")
    for i, c in enumerate(s.clients):
        if c.datacenter not in dcs:
            raise ScenarioError(src, f"clients.{i}.datacenter",
                                f"unknown datacenter {c.datacenter!r}; known: {sorted(dcs)}")
    if s.controller.datacenter is not None and s.controller.datacenter not in dcs:
        raise ScenarioError(src, "controller.datacenter",
                            f"unknown datacenter {s.controller.datacenter!r}; known: {sorted(dcs)}")
    for i, p in enumerate(s.internet):
        for end in ("a", "b"):
            if getattr(p, end) not in clients:
                raise ScenarioError(src, f"internet.{i}.{end}", f"unknown client {getattr(p, end)!r}")
    unique([x.id for x in s.sessions], "sessions")
    for i, x in enumerate(s.sessions):
        if x.publisher not in clients:
            raise ScenarioError(src, f"sessions.{i}.publisher",
                                f"unknown client {x.publisher!r}; known: {sorted(clients)}")
        for j, sub in enumerate(x.subscribers):
            if sub not in clients:
                raise ScenarioError(src, f"sessions.{i}.subscribers.{j}",
                                    f"unknown client {sub!r}; known: {sorted(clients)}")
    g = nx.DiGraph()
    g.add_nodes_from(dcs)
    for ln in s.links:
        g.add_edge(ln.a, ln.b)
        if not ln.directed:
            g.add_edge(ln.b, ln.a)
    if len(dcs) > 1 and not nx.is_strongly_connected(g):
        parts = sorted(sorted(c) for c in nx.strongly_connected_components(g))
        raise ScenarioError(src, "links", f"the overlay is not connected; its parts are {parts}")
    if not s.strategies:
        raise ScenarioError(src, "strategies", "name at least one strategy")
    sessions = {x.id for x in s.sessions}
    for i, ref in enumerate(s.reference.values if s.reference else []):
        where = f"reference.values.{i}"
        if ref.session not in sessions:
            raise ScenarioError(src, f"{where}.session",
                                f"unknown session {ref.session!r}; known: {sorted(sessions)}")
        if ref.strategy not in s.strategies:
            raise ScenarioError(src, f"{where}.strategy",
                                f"{ref.strategy!r} is not among the strategies {s.strategies}")
        if ref.fitted_by:
            data = s.model_dump(exclude={"source", "base_dir"})
            for path in _override_paths(data, ref.fitted_by, src):
                *parents, leaf = path
                node = _walk(data, parents, ref.fitted_by, src)
                if not (isinstance(node, dict) and any(leaf + x in node for x in ("", *_QUANTITY_SUFFIX))):
                    raise ScenarioError(src, f"{where}.fitted_by",
                                        f"no field {ref.fitted_by!r} in this scenario")
