"""Host name and listen address syntax, and which listen addresses collide."""

from __future__ import annotations

import pytest

from gateway.config.addresses import is_hostname, is_ip, is_wildcard_host, listen_overlaps, parse_listen


@pytest.mark.parametrize(
    ("addr", "parsed"),
    [
        ("127.0.0.1:9080", ("127.0.0.1", 9080)),
        ("LocalHost:80", ("localhost", 80)),
        ("[::1]:443", ("::1", 443)),
        ("[FE80::1]:1", ("fe80::1", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_listen_accepts_host_port_and_bracketed_v6(addr: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(addr) == parsed


@pytest.mark.parametrize(
    ("addr", "reason"),
    [
        ("9080", "expected host:port, IPv6 as [addr]:port"),
        ("::1:80", "expected host:port, IPv6 as [addr]:port"),
        ("[nope]:80", "'nope' is not an IPv6 address"),
        ("bad_host!:80", "bad host 'bad_host!'"),
        ("127.0.0.1:0", "port must be 1..65535"),
        ("127.0.0.1:70000", "port must be 1..65535"),
        ("127.0.0.1:123456", "expected host:port, IPv6 as [addr]:port"),
    ],
)
def test_parse_listen_says_what_is_wrong(addr: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_listen(addr)
    assert str(info.value) == f"invalid address {addr!r}: {reason}"


def test_host_names_and_ips() -> None:
    assert is_hostname("api.example.com")
    assert is_hostname("UPPER.example")
    assert not is_hostname("-leading.example")
    assert not is_hostname("a" * 64)  # one label is at most 63 characters
    assert is_hostname(".".join(["a" * 63] * 3 + ["a" * 61]))  # 253 characters: the longest name
    assert not is_hostname(".".join(["a" * 63] * 4))  # 255 characters
    assert is_ip("10.0.0.1") and is_ip("::1")
    assert not is_ip("10.0.0.256") and not is_ip("example.com")


def test_wildcard_hosts_are_a_star_label_then_a_lower_case_name() -> None:
    assert is_wildcard_host("*.example.com")
    assert not is_wildcard_host("*example.com")
    assert not is_wildcard_host("a.*.example.com")
    assert not is_wildcard_host("*.Example.com")


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (("127.0.0.1", 80), ("127.0.0.1", 80), True),
        (("127.0.0.1", 80), ("127.0.0.1", 81), False),
        (("0.0.0.0", 80), ("127.0.0.1", 80), True),
        (("10.0.0.1", 80), ("0.0.0.0", 80), True),
        (("::", 80), ("::1", 80), True),
        (("0.0.0.0", 80), ("::", 80), False),  # IPV6_V6ONLY: the families do not share a wildcard
        (("127.0.0.1", 80), ("10.0.0.1", 80), False),
        (("localhost", 80), ("0.0.0.0", 80), False),  # a name is not resolved here
        (("localhost", 80), ("localhost", 80), True),
    ],
)
def test_listen_overlaps(a: tuple[str, int], b: tuple[str, int], overlap: bool) -> None:
    assert listen_overlaps(a, b) is overlap
    assert listen_overlaps(b, a) is overlap
