"""The `stemflow` command: one entry point that hands each subcommand to the module owning it.

Each subcommand lives with the code it drives and exposes `main(argv) -> int`; this module only
dispatches, so it imports nothing heavy until a subcommand is chosen.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("stemflow.routing.cli", "compute a plan for a scenario and show rates, paths, links"),
    "sim": ("stemflow.sim.__main__", "simulate a scenario under each strategy (SimPy)"),
    "emu": ("stemflow.emu.__main__", "emulate a scenario with real processes in Mininet (root)"),
    "analyze": ("stemflow.analysis.__main__", "tables and figures from results directories"),
    "relay": ("stemflow.relay.__main__", "run a relay server"),
    "controller": ("stemflow.controller_server", "run the controller"),
    "scenario-doc": ("stemflow.scenario_doc", "print the scenario reference (docs/scenario.md)"),
    "gateway": ("stemflow.gateway.__main__", "serve the web apps and a WebSocket endpoint for browsers"),
    "keys": ("stemflow.security.cli", "make the key pair that signs client tokens"),
    "token": ("stemflow.security.cli", "issue a client token with topic permissions"),
    "certs": ("stemflow.security.cli", "make the overlay's CA and relay certificates (mutual TLS)"),
    "pub": ("stemflow.client_cli", "publish messages to a topic"),
    "sub": ("stemflow.client_cli", "subscribe to a topic and print messages"),
    "request": ("stemflow.client_cli", "send a request and print the first reply"),
    "reply": ("stemflow.client_cli", "answer every request on a topic with a message"),
}


def usage() -> str:
    lines = ["usage: stemflow COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'stemflow COMMAND --help' for a command's options, 'stemflow --version' for the "
              "version."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from stemflow.cli_args import version

        print(f"stemflow {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"stemflow: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    if name in ("pub", "sub", "request", "reply", "keys", "token", "certs"):  # one module, several
        return int(module.main([name, *rest]) or 0)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
