"""`stemflow keys`, `stemflow token`, `stemflow certs`: make the overlay's credentials.

Owns these commands' command lines and their messages; the keys, tokens and certificates
themselves are `tokens`'s and `certs`'s. Every mistake is one line on stderr and a non-zero exit.

    stemflow keys init DIR                       signing key (keep it) + verify key (for relays)
    stemflow token issue --key DIR/signing.key --pub 'chat.*' --sub 'chat.>' --ttl 1h
    stemflow certs init DIR                      the overlay's CA
    stemflow certs relay NAME --dir DIR          a relay's certificate (NAME: its datacenter)
    stemflow certs controller --dir DIR          the controller's certificate
"""

from __future__ import annotations

import argparse
import sys
import time

from stemflow.cli_args import ArgumentParser, add_version
from stemflow.security import certs, tokens
from stemflow.subjects import PatternError
from stemflow.units import UnitError, parse_duration_s

DEFAULT_TTL = "1h"
"""A client token's default life: short enough that a leaked one soon stops working, long
enough for a working session; Google's OAuth 2.0 access tokens, for one, last an hour too."""


def _keys(argv: list[str]) -> int:
    p = ArgumentParser(prog="stemflow keys", description="Make the key pair that signs client tokens.")
    add_version(p)
    sub = p.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="make a signing key and its verify key in DIR")
    init.add_argument("dir", metavar="DIR")
    args = p.parse_args(argv)
    signing, verify = tokens.init_keys(args.dir)
    print(f"signing key: {signing} (keep it secret: it issues tokens)")
    print(f"verify key:  {verify} (give it to relays and gateways: --auth-key {verify})")
    return 0


def _ttl(text: str) -> float:
    try:
        ttl = parse_duration_s(text)
    except UnitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not ttl > 0:
        raise argparse.ArgumentTypeError(f"{text}: a token's lifetime must be positive")
    return ttl


def _token(argv: list[str]) -> int:
    p = ArgumentParser(prog="stemflow token", description="Issue a signed client token.")
    add_version(p)
    sub = p.add_subparsers(dest="action", required=True)
    issue = sub.add_parser("issue", help="print a token that allows the given topics")
    issue.add_argument("--key", required=True, metavar="FILE", help="the signing key (keys init)")
    issue.add_argument("--pub", action="append", default=[], metavar="PATTERN",
                       help="topics the holder may publish to (repeat; '*' one token, '>' the rest)")
    issue.add_argument("--sub", action="append", default=[], metavar="PATTERN",
                       help="topics the holder may subscribe to (repeat)")
    issue.add_argument("--ttl", type=_ttl, default=DEFAULT_TTL, metavar="DURATION",
                       help="how long the token is valid, e.g. 30min, 1h, 7d (default: %(default)s)")
    issue.add_argument("--name", default="client", help="who holds it, for logs (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.pub and not args.sub:
        p.error("give at least one --pub or --sub pattern (a token that allows nothing is useless)")
    try:
        key = tokens.load_signing_key(args.key)
        token = tokens.issue_token(key, args.name, tuple(args.pub), tuple(args.sub), args.ttl, time.time())
        print(token)
        print(f"token id {tokens.token_id(token)}: add it to a relay's --revoked file to revoke it",
              file=sys.stderr)
    except PatternError as e:
        p.error(str(e))
    return 0


def _certs(argv: list[str]) -> int:
    p = ArgumentParser(prog="stemflow certs",
                       description="Make the overlay's CA and its members' certificates (mutual TLS).")
    add_version(p)
    sub = p.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="make the CA in DIR")
    init.add_argument("dir", metavar="DIR")
    for role in certs.ROLES:
        member = sub.add_parser(role, help=f"sign a {role}'s certificate with the CA in --dir")
        if role == "relay":
            member.add_argument("name", metavar="NAME", help="the relay's datacenter name (its --dc)")
        member.add_argument("--dir", required=True, metavar="DIR", help="where the CA is")
        member.add_argument("--host", action="append", metavar="HOST",
                            help="an address clients dial it at (repeat; default: 127.0.0.1, localhost)")
    args = p.parse_args(argv)
    if args.action == "init":
        path = certs.init_ca(args.dir)
        print(f"CA certificate: {path} (every member and TLS client trusts it)")
        return 0
    name = args.name if args.action == "relay" else certs.CONTROLLER_NAME
    hosts = tuple(args.host) if args.host else certs.DEFAULT_HOSTS
    path = certs.issue(args.dir, name, args.action, hosts)
    print(f"{args.action} certificate: {path} (key beside it: {path.with_suffix('.key')})")
    return 0


COMMANDS = {"keys": _keys, "token": _token, "certs": _certs}


def main(argv: list[str]) -> int:
    name, rest = argv[0], argv[1:]
    try:
        return COMMANDS[name](rest)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"stemflow {name}: error: {e}", file=sys.stderr)
        return 1
