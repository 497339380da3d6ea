"""Host names and listen addresses: their syntax, and whether two listen addresses collide."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_hostname", "is_ip", "is_wildcard_host", "listen_overlaps", "parse_listen", "parse_nameserver",
           "sni_candidates"]

_LABEL = r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z", re.I)
_WILDCARD_HOST = re.compile(rf"\*(?:\.{_LABEL})+\Z")
_LISTEN = re.compile(r"\[([^\]]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})")
_MAX_HOSTNAME = 253  # RFC 1035, written as dotted text


def is_hostname(host: str) -> bool:
    return len(host) <= _MAX_HOSTNAME and _HOSTNAME.match(host) is not None


def is_wildcard_host(host: str) -> bool:
    """A route host pattern: "*." and then the labels of a host name, lower case ("*.example.com")."""
    return _WILDCARD_HOST.match(host) is not None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_listen(addr: str) -> tuple[str, int]:
    """"host:port" / "[v6]:port" -> (host without brackets, port); ValueError if invalid."""
    m = _LISTEN.fullmatch(addr)
    if m is None:
        raise ValueError(f"invalid address {addr!r}: expected host:port, IPv6 as [addr]:port")
    if m.group(1) is not None:
        host, port = m.group(1), int(m.group(2))
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid address {addr!r}: {host!r} is not an IPv6 address") from None
    else:
        host, port = m.group(3), int(m.group(4))
        if not (is_ip(host) or is_hostname(host)):
            raise ValueError(f"invalid address {addr!r}: bad host {host!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid address {addr!r}: port must be 1..65535")
    return host.lower(), port


def listen_overlaps(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Would binding both conflict? A wildcard covers every address of its
    family (workers set IPV6_V6ONLY, so 0.0.0.0 and [::] do not overlap)."""
    if a[1] != b[1]:
        return False
    if a[0] == b[0]:
        return True
    try:
        ia, ib = ipaddress.ip_address(a[0]), ipaddress.ip_address(b[0])
    except ValueError:
        return False
    return ia.version == ib.version and (ia.is_unspecified or ib.is_unspecified)


def parse_nameserver(text: str) -> str:
    """A ``gateway.resolvers`` entry in the form c-ares takes: "10.0.0.2", "10.0.0.2:53",
    "fd00::2", "[fd00::2]:53". ValueError for anything else (a name cannot be a nameserver)."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid nameserver {text!r}")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"invalid nameserver {text!r}: expected an IP address, optionally with "
                         ":port ([v6addr]:port for IPv6)") from None
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"invalid nameserver {text!r}: port must be 1..65535")
    if not port:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def sni_candidates(name: str) -> list[str]:
    """The `ssls` names that serve a TLS server name, best first: the name itself, then the
    wildcards of its parent domains, longest first (nginx's order: "a.b.example.com" is served
    by "*.b.example.com" before "*.example.com")."""
    name = name.lower().rstrip(".")
    out = [name]
    labels = name.split(".")
    for i in range(1, len(labels) - 1):
        out.append("*." + ".".join(labels[i:]))
    return out
