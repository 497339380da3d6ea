"""Which upstream nodes are named by a host name (not an IP address), and how a compiled
upstream turns a name into one node per address. A map of name -> addresses is what the master's
resolver produces and what the workers compile with."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from math import lcm
from typing import Any

from gateway.config import Config, Node

#: name -> its current addresses (IPv4 and IPv6 text); a name missing has none yet.
Addresses = Mapping[str, Sequence[str]]

#: Weights are split between a name's addresses exactly (see ``node_addresses``) unless that
#: would need a larger common multiple than this; then the split is rounded.
_MAX_SCALE = 720


def bare_host(host: str) -> str:
    """``[::1]`` -> ``::1``: the brackets of an IPv6 literal are syntax, not part of the address."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_name(host: str) -> bool:
    """True for a host name the resolver must resolve; False for an IP literal."""
    try:
        ipaddress.ip_address(bare_host(host))
    except ValueError:
        return True
    return False


def node_names(config: Config) -> dict[str, str]:
    """Every host name among the config's nodes -> the first place it is used (for logs):
    ``upstreams[]``, the routes' inline upstreams, and inline upstreams in plugin configs
    (traffic-split)."""
    names: dict[str, str] = {}
    for i, up in enumerate(config.upstreams):
        for j, node in enumerate(up.nodes):
            if is_name(node.host):
                names.setdefault(node.host.lower(), f"upstreams[{i}].nodes[{j}].host")
    for i, route in enumerate(config.routes):
        if route.upstream is not None or route.plugins:
            for host, where in route_names(i, route):
                names.setdefault(host, where)
    for host, where in _plugin_node_hosts(config.global_plugins, "global_rules.plugins"):
        names.setdefault(host.lower(), where)
    return names


def route_names(i: int, route: Any) -> list[tuple[str, str]]:
    """The host names among one route's nodes (its inline upstream's, its plugins'), with where
    each is used (the route at index ``i``)."""
    out: list[tuple[str, str]] = []
    if route.upstream is not None:
        for j, node in enumerate(route.upstream.nodes):
            if is_name(node.host):
                out.append((node.host.lower(), f"routes[{i}].upstream.nodes[{j}].host"))
    if route.plugins:
        out += [(host.lower(), where) for host, where in _plugin_node_hosts(route.plugins, f"routes[{i}].plugins")]
    return out


class NodeNames:
    """``node_names`` of the running config, kept across versions: the routes' names by route
    id, so that a version shipped as a delta (config_delta) reads only the routes it changed."""

    def __init__(self) -> None:
        #: route id -> its names (routes without any are left out), of the config ``last``
        self.routes: dict[str, list[tuple[str, str]]] = {}
        self.last: Config | None = None

    def update(self, config: Config, base: Config | None,
               changes: Sequence[tuple[str, str, Any]] | None) -> dict[str, str]:
        """The names of ``config``; ``changes``: what changed since ``base``, or None (every
        route is read, as when ``base`` is not the config of the last call)."""
        last, self.last = self.last, config
        if changes is None or base is None or base is not last:
            self.routes = {}
            for i, route in enumerate(config.routes):
                if route.upstream is not None or route.plugins:
                    found = route_names(i, route)
                    if found:
                        self.routes[route.id] = found
        else:
            for section, key, route in changes:
                if section != "routes":
                    continue
                found = []
                if route is not None and (route.upstream is not None or route.plugins):
                    # its index only names where (for logs); found once, when it has names
                    found = route_names(0, route)
                    if found:
                        at = next((i for i, r in enumerate(config.routes) if r is route), 0)
                        found = route_names(at, route)
                if found:
                    self.routes[key] = found
                else:
                    self.routes.pop(key, None)
        names: dict[str, str] = {}
        for i, up in enumerate(config.upstreams):
            for j, node in enumerate(up.nodes):
                if is_name(node.host):
                    names.setdefault(node.host.lower(), f"upstreams[{i}].nodes[{j}].host")
        for found in self.routes.values():
            for host, where in found:
                names.setdefault(host, where)
        for host, where in _plugin_node_hosts(config.global_plugins, "global_rules.plugins"):
            names.setdefault(host.lower(), where)
        return names


def _plugin_node_hosts(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Host names under any ``nodes`` (list or APISIX mapping form) inside plugin configs."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "nodes":
                hosts: list[Any] = []
                if isinstance(item, list):
                    hosts = [n.get("host") for n in item if isinstance(n, dict)]
                elif isinstance(item, dict):
                    hosts = [k.rsplit(":", 1)[0] if not k.startswith("[") else k for k in item]
                for host in hosts:
                    if isinstance(host, str) and host and is_name(host):
                        yield host, f"{where}.nodes"
            else:
                yield from _plugin_node_hosts(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _plugin_node_hosts(item, f"{where}[{i}]")


def node_addresses(nodes: Sequence[Node], addresses: Addresses | None) -> list[list[tuple[str, str | None, int]]]:
    """For each config node, its (address, name or None, weight) entries: an IP node is itself,
    a named node one entry per current address (none while the name has none).

    A named node's weight is its share of the upstream whatever its number of addresses, so it
    is split evenly between them: every weight is scaled by the least common multiple of the
    address counts, so the split is exact (a name of weight 1 with 2 addresses beside an IP
    node of weight 1: 1, 1 and 2). With ``addresses`` None (``gateway check``, the master's
    compile check) a name stays as it is."""
    expanded: list[tuple[Node, str | None, list[str]]] = []
    for node in nodes:
        host = bare_host(node.host)
        if addresses is None or not is_name(host):
            expanded.append((node, None, [host]))
        else:
            expanded.append((node, host, list(addresses.get(host.lower(), ()))))
    scale = lcm(*(len(found) for _, _, found in expanded if found))
    exact = scale <= _MAX_SCALE
    if not exact:
        scale = _MAX_SCALE
    out: list[list[tuple[str, str | None, int]]] = []
    for node, name, found in expanded:
        entries = []
        for address in found:
            share = node.weight * scale // len(found) if exact else round(node.weight * scale / len(found))
            entries.append((address, name, max(share, 1) if node.weight else 0))
        out.append(entries)
    return out
