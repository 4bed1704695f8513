"""`ssl` contexts from the overlay's certificates (`certs`): who must show a certificate to whom.

Owns the TLS policy: TLS 1.2 at least (1.3 where both ends have it, Python's defaults for
ciphers), the CA every member trusts, and the three uses —

- the controller accepts only members with a certificate of the overlay CA (mutual TLS);
- a relay's port asks for a certificate and accepts connections without one (clients, who
  authenticate with tokens); a peer relay's HELLO is refused unless its certificate names it;
- members dial each other presenting their own certificate and checking the other's name as
  TLS's hostname (the relay's datacenter, or `certs.CONTROLLER_NAME`).

Clients that use TLS are given the CA certificate and check the relay's address.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from stemflow.security.certs import CA_CERT_FILE


def _base(purpose: ssl.Purpose, ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def member_server_context(directory: str | Path, name: str, require_cert: bool) -> ssl.SSLContext:
    """For a member's listening port: its certificate; peers' checked against the CA
    (`require_cert`: the controller; else optional, for a relay's clients)."""
    d = Path(directory)
    ctx = _base(ssl.Purpose.CLIENT_AUTH, d / CA_CERT_FILE)
    ctx.load_cert_chain(d / f"{name}.pem", d / f"{name}.key")
    ctx.verify_mode = ssl.CERT_REQUIRED if require_cert else ssl.CERT_OPTIONAL
    return ctx


def member_client_context(directory: str | Path, name: str) -> ssl.SSLContext:
    """For a member dialing another: its own certificate shown, the other's name checked
    (pass the expected name as `server_hostname`)."""
    d = Path(directory)
    ctx = _base(ssl.Purpose.SERVER_AUTH, d / CA_CERT_FILE)
    ctx.load_cert_chain(d / f"{name}.pem", d / f"{name}.key")
    return ctx


def client_context(ca_file: str | Path) -> ssl.SSLContext:
    """For an application client: the relay's certificate checked against the overlay CA."""
    return _base(ssl.Purpose.SERVER_AUTH, Path(ca_file))


class MemberTls:
    """A member's two contexts, built once (so TLS sessions can be resumed): `server` for its
    listening port, `client` for dialing other members. `ValueError` names a missing file."""

    def __init__(self, directory: str | Path, name: str, require_client_cert: bool):
        d = Path(directory)
        for f in (d / CA_CERT_FILE, d / f"{name}.pem", d / f"{name}.key"):
            if not f.is_file():
                raise ValueError(f"{f}: missing; make it with 'stemflow certs' (init, then relay "
                                 f"{name} or controller)")
        try:
            self.server = member_server_context(d, name, require_client_cert)
            self.client = member_client_context(d, name)
        except ssl.SSLError as e:
            raise ValueError(f"{d}: certificates for {name!r} do not load: {e.reason or e}") from None
