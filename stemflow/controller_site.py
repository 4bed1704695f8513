"""Where the controller runs, and each relay's round trip to it.

Owns one number per relay: the round trip its control messages take to the controller and back
(an interest report up, a table down). A scenario places the controller in a datacenter
(`controller: {datacenter: NAME}`); it then runs beside that datacenter's relay (round trip 0),
and every other relay reaches it over the shortest-RTT path of the overlay's links to that
datacenter: the controller's traffic crosses the same inter-region network as the data, and the
path need not be one link (a relay with no direct link to the controller's datacenter goes
through others). Without a datacenter (the default) the controller is beside every relay and a
session's set-up costs no round trip.

Both drivers read these numbers and nothing else about the controller's place: the simulator
delays each control message by half its relay's round trip (`stemflow.sim.model.ControlPlane`),
the emulator joins the controller's host to each relay's by a link with that round trip
(`stemflow.emu.topology`). With symmetric link RTTs a frame can never overtake its table: the
table reaches relay X at most (RTT(X, source) + RTT(source, controller)) / 2 after the plan, the
frame no earlier than RTT(source, controller) / 2 + RTT(source, X) / 2.
"""

from __future__ import annotations

import networkx as nx

from stemflow.network import NetworkState


def controller_rtts_ms(net: NetworkState, datacenter: str | None) -> dict[str, float]:
    """Per relay (datacenter), the round trip to a controller in `datacenter`, in ms.

    Parameters: `net`, the overlay (its links' RTTs); `datacenter`, where the controller runs
    (None: beside every relay).
    Returns: {relay: RTT in ms}, 0 for the relay in the controller's datacenter; a relay with no
    path to it is left out.

    Example: links us-east1 -- us-west1 64 ms, us-west1 -- asia-east1 120 ms and a controller in
    us-west1 give {us-east1: 64, us-west1: 0, asia-east1: 120}.
    """
    if datacenter is None:
        return dict.fromkeys(net.datacenters, 0.0)
    g = nx.DiGraph()
    g.add_nodes_from(net.datacenters)
    for (a, b), link in net.links.items():
        g.add_edge(a, b, rtt_ms=link.rtt_ms)
    to_controller = nx.single_source_dijkstra_path_length(g.reverse(copy=False), datacenter,
                                                          weight="rtt_ms")
    return {dc: float(to_controller[dc]) for dc in net.datacenters if dc in to_controller}

