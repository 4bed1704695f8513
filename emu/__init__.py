"""Emulation of a scenario: real controller and relay processes in Mininet hosts on shaped links.

Modules, each owning one thing:
- `delayline` — the user-space WAN link process (loss, paced drop-tail queue, delay) over TUN;
- `links` — link backends behind Mininet's `Link` (netem where the kernel has it, else the
  delay line) and the start-up probe that chooses between them;
- `topology` — hosts, links, addresses and static routes for a scenario, and running commands
  inside hosts;
- `cleanup` — the registry of everything a run creates, and its teardown (also after a crash);
- `prereq` — what the machine must have, and how to install it;
- `probe`, `measure` — direct path measurements (ping, TCP goodput, UDP loss) between hosts;
- `__main__` — `python -m stemflow.emu`.
"""
