"""What a relay does about a subscriber that does not keep up with a reliable topic, per topic.

Owns the slow-subscriber policy: the rules `stemflow relay --slow-subscriber PATTERN=POLICY`
gives, and the deadline. Two policies:

- `disconnect` (the default, NATS's "slow consumer"): the topic waits for a subscriber whose
  queue is full and that has read nothing for at most `deadline_s` (a subscriber that keeps
  reading, however slowly, is waited for: `RelayCore.subscriber_progress`); then the relay
  closes that subscriber's connection with an ERROR that says why, counts it
  (`slow_subscriber_disconnects`), and the topic goes on at the pace of the others. A service
  cannot let one tenant's dead consumer stall everyone else's.
- `block`: the topic moves at the pace of its slowest subscriber, however slow, and nothing is
  lost (a lossless pipeline between processes that trust each other).

Either way only that topic waits: credit (`credit.py`) holds back its frames alone, never the
connections other topics share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stemflow.subjects import matches, validate_pattern

BLOCK, DISCONNECT = "block", "disconnect"
POLICIES = (BLOCK, DISCONNECT)

SLOW_SUBSCRIBER_DEADLINE_S = 10.0
"""How long a `disconnect` topic waits for a subscriber whose queue stays full: NATS's default
write deadline. Long enough for a GC pause or a network blip; short against a dead consumer."""


@dataclass(frozen=True)
class SlowSubscriberPolicy:
    """Topic patterns (NATS subjects, `stemflow.subjects`: `*` one token, `>` the rest) to
    policies; the first match wins."""

    rules: tuple[tuple[str, str], ...] = ()
    default: str = DISCONNECT
    deadline_s: float = SLOW_SUBSCRIBER_DEADLINE_S
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for pattern, _ in self.rules:
            validate_pattern(pattern)  # a PatternError is a ValueError: one line at start-up
        for _, policy in (*self.rules, ("", self.default)):
            if policy not in POLICIES:
                raise ValueError(f"unknown slow-subscriber policy {policy!r}; known: "
                                 f"{', '.join(POLICIES)}")
        if not self.deadline_s > 0:
            raise ValueError(f"slow-subscriber deadline must be positive, got {self.deadline_s}")

    @classmethod
    def parse(cls, rules: list[str], deadline_s: float = SLOW_SUBSCRIBER_DEADLINE_S
              ) -> SlowSubscriberPolicy:
        """From `PATTERN=POLICY` strings (a bare POLICY sets the default)."""
        parsed: list[tuple[str, str]] = []
        default = DISCONNECT
        for rule in rules:
            pattern, sep, policy = rule.rpartition("=")
            if not sep:
                default = rule
            elif not pattern:
                raise ValueError(f"slow-subscriber rule {rule!r}: empty topic pattern")
            else:
                parsed.append((pattern, policy))
        return cls(tuple(parsed), default, deadline_s)

    def of(self, topic: str) -> str:
        """The policy for `topic`."""
        p = self._cache.get(topic)
        if p is None:
            p = next((pol for pat, pol in self.rules if matches(pat, topic)), self.default)
            if len(self._cache) < 4096:
                self._cache[topic] = p
        return p
