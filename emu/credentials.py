"""The credentials of one emulated run, made fresh from the scenario's `security:` block.

Owns turning `security: {tls, tokens}` into files and command-line flags: a new CA in a
temporary directory, a certificate per relay (naming its datacenter and its emulated address,
which clients check) and one for the controller; with tokens, a signing key and one token per
client that allows exactly what its sessions need it to publish and subscribe. Nothing outlives
the run: the directory is removed when the run ends. Starting the processes with these flags
is `stemflow.emu.run`'s; what each flag means is the relay's, controller's and client's own
(docs/security.md).
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from stemflow.emu.client_transport import REPLY_SUFFIX
from stemflow.emu.workload import answered

from stemflow.scenario import Scenario, SecuritySettings
from stemflow.security import certs, tokens

TOKEN_TTL_S = 24 * 3600.0
"""Tokens outlive any run (the longest shipped scenario runs minutes); the keys die with the run."""


@dataclass(frozen=True)
class RunCredentials:
    """Where one run's credentials are, and the flags each process is started with."""

    security: SecuritySettings
    directory: Path
    status_token: str = ""
    token_files: Mapping[str, Path] = field(default_factory=dict)
    """Each client's token file, by client label."""

    @property
    def ca_dir(self) -> Path:
        return self.directory / "ca"

    @property
    def verify_key(self) -> Path:
        return self.directory / "keys" / tokens.VERIFY_KEY_FILE

    @property
    def open_to_clients(self) -> bool:
        """Whether anyone reaching a relay may publish and subscribe (no tokens checked)."""
        return not self.security.tokens

    def controller_args(self) -> list[str]:
        if not self.security.tls:
            return ["--insecure"]
        return ["--certs", str(self.ca_dir), f"--status-token={self.status_token}"]

    def status_args(self) -> list[str]:
        """For `stemflow.emu.overlay_ready`, which reads the controller's status endpoint."""
        # "=": a token_urlsafe token may start with "-", which argparse would take for a flag
        return [f"--status-token={self.status_token}"] if self.status_token else []

    def relay_args(self) -> list[str]:
        args = ["--certs", str(self.ca_dir)] if self.security.tls else []
        if self.security.tokens:
            args += ["--auth-key", str(self.verify_key)]
        if not (self.security.tls and self.security.tokens):
            args.append("--insecure")  # the emulated network is ours alone
        return args

    def client_args(self, label: str) -> list[str]:
        args = ["--ca", str(self.ca_dir / certs.CA_CERT_FILE)] if self.security.tls else []
        if self.security.tokens:
            args += ["--token-file", str(self.token_files[label])]
        return args


def client_topics(scenario: Scenario) -> dict[str, tuple[set[str], set[str]]]:
    """What each client may publish and subscribe to, no more: a publisher publishes its
    session's topic, its subscribers subscribe to it; in a request-response session the
    subscribers publish the replies (`<id>.reply`) and the publisher subscribes to them."""
    out: dict[str, tuple[set[str], set[str]]] = {c.name: (set(), set()) for c in scenario.clients}
    for s in scenario.sessions:
        out[s.publisher][0].add(s.id)
        for name in s.subscribers:
            out[name][1].add(s.id)
        if answered(s):
            out[s.publisher][1].add(s.id + REPLY_SUFFIX)
            for name in s.subscribers:
                out[name][0].add(s.id + REPLY_SUFFIX)
    return out


@contextmanager
def run_credentials(scenario: Scenario, relays: Mapping[str, str],
                    clients: Iterable[str]) -> Iterator[RunCredentials]:
    """Fresh credentials for `scenario`'s run: `relays` maps each relay's datacenter label to
    its emulated address; `clients` are the client labels (the scenario's client names)."""
    security = scenario.security
    with tempfile.TemporaryDirectory(prefix="stemflow-creds-") as tmp:
        d = Path(tmp)
        status_token = ""
        if security.tls:
            certs.init_ca(d / "ca")
            for dc, address in relays.items():
                certs.issue(d / "ca", dc, hosts=(address,))
            certs.issue(d / "ca", certs.CONTROLLER_NAME, "controller")
            status_token = secrets.token_urlsafe(24)
        files: dict[str, Path] = {}
        if security.tokens:
            signing, _ = tokens.init_keys(d / "keys")
            key = tokens.load_signing_key(signing)
            topics = client_topics(scenario)
            for label in clients:
                publish, subscribe = topics.get(label, (set(), set()))
                token = tokens.issue_token(key, label, tuple(sorted(publish)),
                                           tuple(sorted(subscribe)), TOKEN_TTL_S, time.time())
                files[label] = d / "tokens" / f"{label}.jwt"
                files[label].parent.mkdir(exist_ok=True)
                files[label].write_text(token)
        yield RunCredentials(security, d, status_token, files)
