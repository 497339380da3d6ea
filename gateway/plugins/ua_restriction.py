"""``ua-restriction``: allows or refuses requests by their ``User-Agent``, with APISIX 3.x's
keys: exactly one of ``allowlist`` / ``denylist`` (regexes searched in the header),
``bypass_missing`` (false: a request without User-Agent is refused) and ``message`` ("Not
allowed", sent as ``{"message": ...}`` with 403). Regexes are Python's ``re`` dialect, compiled
once into one alternation.
"""
from __future__ import annotations

import json
import re
from typing import Annotated

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginConfig


def combined(patterns: list[str], key: str) -> re.Pattern[str]:
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{key}[{i}]: invalid regex {pattern!r}: {exc}") from None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


class UaRestrictionConfig(PluginConfig):
    allowlist: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    denylist: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    bypass_missing: bool = False
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] = "Not allowed"

    def __post_init__(self) -> None:
        if (self.allowlist is None) == (self.denylist is None):
            raise ValueError("give exactly one of allowlist or denylist")
        combined(self.allowlist or self.denylist or [],
                 "allowlist" if self.allowlist is not None else "denylist")


class UaRestriction(Plugin):
    name = "ua-restriction"
    priority = 2999
    Config = UaRestrictionConfig

    def __init__(self, config: UaRestrictionConfig) -> None:
        super().__init__(config)
        self.allow_listed = config.allowlist is not None
        self.pattern = combined(config.allowlist or config.denylist or [],
                                "allowlist" if self.allow_listed else "denylist")
        self.bypass_missing = config.bypass_missing
        self.refusal = Response(403, json.dumps({"message": config.message}).encode(),
                                [("Content-Type", "application/json")])

    def access(self, ctx: Context) -> Response | None:
        agent = ctx.header("user-agent")
        if agent is None:
            return None if self.bypass_missing else self.refusal
        if (self.pattern.search(agent) is not None) == self.allow_listed:
            return None
        return self.refusal
