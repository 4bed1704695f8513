"""Stemflow: an open testbed for inter-datacenter overlays.

One routing core (`stemflow.routing`, pure) and one sans-IO controller (`stemflow.controller`),
driven by a SimPy simulator (`stemflow.sim`), by real relay and controller processes
(`stemflow.relay`), and by a Mininet emulation of WAN links (`stemflow.emu`).
"""

__version__ = "0.1.0"
