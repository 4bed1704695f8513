"""Subject patterns, in the manner of NATS subjects: the one place that says what a pattern is.

Owns the syntax and the matching of topic patterns: a topic is a string of tokens separated by
`.` (`chat.room1`); a pattern is the same, where the token `*` stands for exactly one token and a
final `>` for one or more tokens (`chat.*` matches `chat.room1` but not `chat.room1.typing` nor
`chat`; `video.>` matches `video.4k` and `video.4k.key`, not `video`). A pattern of the single
token `>` matches every topic. What a match grants (publish, subscribe) is the caller's; this
module only answers "does this pattern cover this topic".

A subscription may name a pattern; a topic that is published may not (`is_pattern`), as in NATS,
so a pattern given where a topic is expected can always be told apart and refused.

Topics themselves may be any UTF-8 string (the relay has carried such topics from the start); a
topic that is not dot-separated tokens is simply one token, matched by `*` or `>` or by itself.

Reference: NATS, "Subject-Based Messaging" (docs.nats.io/nats-concepts/subjects): `*` matches a
single token, `>` one or more tokens and only at the end of a subject.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "."
ONE = "*"
REST = ">"


class PatternError(ValueError):
    """A pattern that is not well formed; the message says which token and why."""


def validate_pattern(pattern: str) -> str:
    """Return `pattern` if it is well formed, else raise `PatternError` saying why.

    Well formed: non-empty tokens; `*` and `>` only as whole tokens; `>` only last.
    """
    if not pattern:
        raise PatternError("empty pattern: expected tokens separated by '.', e.g. chat.* or video.>")
    tokens = pattern.split(SEPARATOR)
    for i, token in enumerate(tokens):
        if not token:
            raise PatternError(f"pattern {pattern!r}: empty token at position {i + 1}")
        if token == REST and i != len(tokens) - 1:
            raise PatternError(f"pattern {pattern!r}: '>' may only be the last token")
        if token not in (ONE, REST) and (ONE in token or REST in token):
            raise PatternError(f"pattern {pattern!r}: token {token!r} mixes a wildcard with text; "
                               "'*' and '>' must stand alone between dots")
    return pattern


def is_pattern(topic: str) -> bool:
    """Whether `topic` has a wildcard token (`*`, or `>` last): a subscription's pattern, not a
    topic one can publish on."""
    if ONE not in topic and REST not in topic:  # the common case, without a split
        return False
    return any(t in (ONE, REST) for t in topic.split(SEPARATOR))


def matches(pattern: str, topic: str) -> bool:
    """Whether the (well-formed) `pattern` covers `topic`; `topic` may itself be a pattern, and
    is covered when every topic it matches is (`chat.>` covers `chat.*`, not the reverse).

    >>> matches("chat.*", "chat.room1"), matches("chat.*", "chat.room1.typing")
    (True, False)
    >>> matches("video.>", "video.4k.key"), matches("video.>", "video")
    (True, False)
    """
    if pattern in (topic, REST):
        return bool(topic)
    want = pattern.split(SEPARATOR)
    have = topic.split(SEPARATOR)
    for i, token in enumerate(want):
        if token == REST:
            return len(have) > i
        if i >= len(have):
            return False
        if token != ONE and token != have[i] or token == ONE and have[i] == REST:
            return False
    return len(have) == len(want)


@dataclass(frozen=True)
class PatternSet:
    """Several patterns; a topic is covered if any one covers it. Empty: covers nothing."""

    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for p in self.patterns:
            validate_pattern(p)

    def covers(self, topic: str) -> bool:
        return any(matches(p, topic) for p in self.patterns)

    def __str__(self) -> str:
        return ", ".join(self.patterns) if self.patterns else "(none)"
