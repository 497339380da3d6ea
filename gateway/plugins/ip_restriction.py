"""``ip-restriction``: allows (``whitelist``) or refuses (``blacklist``) clients by address,
with APISIX's keys: exactly one of the lists, of IPv4/IPv6 addresses and CIDRs; ``message``
"Your IP address is not allowed" and ``response_code`` 403 for the refusal (a JSON
``{"message": ...}`` body). The client address is the connection's peer; an IPv4-mapped IPv6
peer (``::ffff:192.0.2.1``) is checked as the IPv4 address it is.

The networks are parsed once; each client address is decided once per worker and
remembered (a bounded cache), so a request costs a dict lookup.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Annotated

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CACHE_SIZE = 8192


def parse_networks(entries: list[str], key: str) -> list[Network]:
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{key}[{i}]: {entry!r} is not an IP address or CIDR") from None
    return out


class IpRestrictionConfig(PluginConfig):
    whitelist: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    blacklist: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] = \
        "Your IP address is not allowed"
    response_code: Annotated[int, msgspec.Meta(ge=403, le=404)] = 403

    def __post_init__(self) -> None:
        if (self.whitelist is None) == (self.blacklist is None):
            raise ValueError("give exactly one of whitelist or blacklist")
        if self.whitelist is not None:
            parse_networks(self.whitelist, "whitelist")
        if self.blacklist is not None:
            parse_networks(self.blacklist, "blacklist")


class IpRestriction(Plugin):
    name = "ip-restriction"
    priority = 3000
    Config = IpRestrictionConfig

    def __init__(self, config: IpRestrictionConfig) -> None:
        super().__init__(config)
        self.allow_listed = config.whitelist is not None
        networks = parse_networks(config.whitelist or config.blacklist or [],
                                  "whitelist" if self.allow_listed else "blacklist")
        self.v4 = [n for n in networks if n.version == 4]
        self.v6 = [n for n in networks if n.version == 6]
        self.decisions: dict[str, bool] = {}
        body = json.dumps({"message": config.message}).encode()
        self.refusal = Response(config.response_code, body,
                                [("Content-Type", "application/json")])

    def listed(self, client_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(client_ip.partition("%")[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        networks = self.v4 if address.version == 4 else self.v6
        return any(address in network for network in networks)

    def allowed(self, client_ip: str) -> bool:
        decision = self.decisions.get(client_ip)
        if decision is None:
            decision = self.listed(client_ip) == self.allow_listed
            if len(self.decisions) >= CACHE_SIZE:
                self.decisions.clear()
            self.decisions[client_ip] = decision
        return decision

    def access(self, ctx: Context) -> Response | None:
        if self.allowed(ctx.client_ip):
            return None
        return self.refusal
