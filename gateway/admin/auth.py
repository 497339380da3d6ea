"""The admin key and the client networks allowed to use the admin listener.

With no key in the config (``key`` absent or empty), one is generated once and kept in
``<state_dir>/admin.key`` (mode 0600), and reused on later starts so that scrape configs keep
working (Prometheus reads it with ``authorization: {credentials_file: ...}``). The key itself is
never logged; the log names the file.
"""
from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from gateway.atomic_file import write_atomically

log = logging.getLogger("gateway.admin")

KEY_FILE = "admin.key"


def generated_key(state_dir: Path) -> str:
    """The key kept in ``state_dir/admin.key``, created on first use."""
    path = state_dir / KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = ""
    if key:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        log.info("admin API: no key configured; using the generated key kept in %s", path)
        return key
    key = secrets.token_urlsafe(32)
    write_atomically(path, (key + "\n").encode(), 0o600)
    log.warning("admin API: no key configured; generated one and wrote it to %s (send it as "
                "X-API-KEY or Authorization: Bearer)", path)
    return key


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request carries: ``X-API-KEY`` (APISIX) or ``Authorization: Bearer``."""
    key = headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def key_matches(presented: str | None, expected: str) -> bool:
    if presented is None or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


class AllowList:
    """``allow_admin`` CIDRs; IPv4-mapped IPv6 clients are matched as IPv4."""

    def __init__(self, cidrs: list[str]) -> None:
        self.cidrs = list(cidrs)
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def allows(self, client_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks
                   if network.version == address.version)
