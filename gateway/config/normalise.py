"""The APISIX shorthand forms turned into the schema's single form, on plain data.

Done before decoding (not in the structs) so the typed fields have one shape for every
consumer. New containers are built: the caller's data, e.g. an Admin API request body,
is not modified.
"""

from __future__ import annotations

import re
from typing import Any

from .issues import ConfigIssue, DocPath, issue_at

__all__ = ["normalise"]

_NODE_KEY = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?\Z")
#: APISIX: a node without a port uses the scheme's default port.
_DEFAULT_NODE_PORT = 80


def normalise(data: Any, file: str) -> tuple[Any, list[ConfigIssue]]:
    """`data` in the schema's form, and the shorthands that could not be understood."""
    issues: list[ConfigIssue] = []
    if not isinstance(data, dict):
        return data, issues
    # A section left empty (`gateway:` with everything below commented out)
    # means "defaults". Top-level `x-` keys are free for YAML anchors, as in
    # docker-compose, so shared fragments need not be repeated.
    data = {k: v for k, v in data.items() if v is not None and not (isinstance(k, str) and k.startswith("x-"))}
    for key in ("listen", "tls_listen"):
        gw = data.get("gateway")
        if isinstance(gw, dict) and isinstance(gw.get(key), str):
            data["gateway"] = {**gw, key: [gw[key]]}
    if isinstance(data.get("ssls"), list):
        # APISIX's ssl takes one `sni` or a list `snis`
        data["ssls"] = [{**{k: v for k, v in s.items() if k != "sni"}, "snis": [s["sni"]]}
                        if isinstance(s, dict) and "sni" in s and "snis" not in s else s
                        for s in data["ssls"]]
    if isinstance(data.get("upstreams"), list):
        data["upstreams"] = [
            _normalise_upstream(u, ("upstreams", i), file, issues) for i, u in enumerate(data["upstreams"])
        ]
    if isinstance(data.get("routes"), list):
        routes = []
        for i, r in enumerate(data["routes"]):
            r = _normalise_plugins(r)
            if isinstance(r, dict) and "upstream" in r:
                r = {**r, "upstream": _normalise_upstream(r["upstream"], ("routes", i, "upstream"), file, issues)}
            routes.append(r)
        data["routes"] = routes
    if isinstance(data.get("consumers"), list):
        data["consumers"] = [_normalise_plugins(c) for c in data["consumers"]]
    rules = data.get("global_rules")
    if isinstance(rules, list):
        data["global_rules"] = [_normalise_plugins(r) for r in rules]
    elif rules is not None:
        data["global_rules"] = _normalise_plugins(rules)
    return data, issues


def _normalise_upstream(up: Any, path: DocPath, file: str, issues: list[ConfigIssue]) -> Any:
    """APISIX's `nodes: {"host:port": weight}` becomes the list of node objects."""
    if not isinstance(up, dict) or not isinstance(up.get("nodes"), dict):
        return up
    nodes: list[Any] = []
    for i, (key, weight) in enumerate(up["nodes"].items()):
        m = _NODE_KEY.match(key) if isinstance(key, str) else None
        if m is None:
            message = f"invalid node {key!r}: expected 'host:port' or '[v6addr]:port'"
            issues.append(issue_at(file, path + ("nodes", i), message))
            continue
        port = m.group("port")
        host = m.group("v6") or m.group("host")
        nodes.append({"host": host, "port": int(port) if port else _DEFAULT_NODE_PORT, "weight": weight})
    return {**up, "nodes": nodes}


def _normalise_plugins(obj: Any) -> Any:
    # `prometheus:` with nothing after it is how people write "enabled, default config".
    if isinstance(obj, dict) and isinstance(obj.get("plugins"), dict):
        plugins = obj["plugins"]
        if any(v is None for v in plugins.values()):
            return {**obj, "plugins": {k: ({} if v is None else v) for k, v in plugins.items()}}
    return obj
