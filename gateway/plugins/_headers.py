"""Checks of header names and values that plugins take from the config."""
from __future__ import annotations

import re

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def check_header_name(name: str, where: str) -> None:
    """ValueError unless ``name`` is an RFC 9110 token."""
    if not _TOKEN.match(name):
        raise ValueError(f"{where}: {name!r} is not a valid header name")


def check_header_value(value: str, where: str) -> None:
    """ValueError if ``value`` could split the header (CR, LF) or end it early (NUL)."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{where}: header values cannot contain CR, LF or NUL")
