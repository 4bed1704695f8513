"""The overlay's small certificate authority: one CA, one certificate per relay and controller.

Owns the files and what a certificate says: the CA (`ca.pem`, `ca.key`) signs, for each member,
`NAME.pem` / `NAME.key` whose subject common name is the member's name (a relay's datacenter)
and whose organizational unit is its role (`relay` or `controller`); the subject alternative
names carry the name as a DNS name (peers check it as TLS's hostname) and the addresses clients
dial it at. How certificates are used on connections is `tls`'s.

ECDSA P-256 keys: every TLS library signs and verifies them, and a handshake with them costs
a fraction of RSA-2048's on the server (RFC 8422 §1 gives the comparable strengths).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stemflow.security.schema import SchemaError, relay_name

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CA_DAYS = 3650
"""Ten years: the CA outlives the testbed; a leaked CA key is replaced, not waited out."""
MEMBER_DAYS = 365
"""A year: within the 398 days the CA/Browser Forum's baseline requirements allow a public
certificate, so a leaked member key stops working within a year even if nobody notices."""
ROLES = ("relay", "controller")
CONTROLLER_NAME = "controller"
"""The controller's certificate name: relays check it as the controller's TLS hostname."""
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Identity:
    """Who a verified certificate says its holder is."""

    name: str
    role: str


def init_ca(directory: str | Path, now: datetime.datetime | None = None) -> Path:
    """Make the CA in `directory` (refusing to replace one); returns the CA certificate's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if (d / CA_KEY_FILE).exists():
        raise FileExistsError(f"{d / CA_KEY_FILE} exists; refusing to replace the overlay's CA")
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stemflow overlay CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(d / CA_KEY_FILE, key)
    (d / CA_CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return d / CA_CERT_FILE


def issue(directory: str | Path, name: str, role: str = "relay",
          hosts: tuple[str, ...] = DEFAULT_HOSTS, now: datetime.datetime | None = None) -> Path:
    """Sign a certificate for member `name` with the CA in `directory`; returns its path."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {ROLES}")
    if (name == CONTROLLER_NAME) != (role == "controller"):  # relays check the controller by name
        raise ValueError(f"the name {CONTROLLER_NAME!r} is the controller's, and only its")
    try:
        relay_name(name, "name")
    except SchemaError as e:
        raise ValueError(str(e)) from None
    d = Path(directory)
    try:
        ca_key = serialization.load_pem_private_key((d / CA_KEY_FILE).read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((d / CA_CERT_FILE).read_bytes())
    except OSError as e:
        raise ValueError(f"{d}: no CA there ({e.strerror}); make one with 'stemflow certs init {d}'") \
            from None
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = [x509.DNSName(name)]
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=MEMBER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(d / f"{name}.key", key)
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return d / f"{name}.pem"


def identity(peercert: dict | None) -> Identity | None:
    """The identity in a certificate `ssl` verified (`SSLObject.getpeercert()`), or None."""
    if not peercert:
        return None
    fields = {k: v for rdn in peercert.get("subject", ()) for k, v in rdn}
    name, role = fields.get("commonName"), fields.get("organizationalUnitName")
    if not isinstance(name, str) or role not in ROLES:
        return None
    return Identity(name, role)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
