"""Which routes a write to another resource can affect: the part of the config its check needs.

A route refers to an upstream by ``upstream_id``; its plugins may refer to upstreams
(traffic-split), consumers (consumer-restriction, the auth plugins), plugin metadata, and run
beside the global rules' plugins. A route without plugins and without that upstream id compiles
the same whatever the write, so it need not be checked again. Ssls and routes are independent.
"""
from __future__ import annotations

from gateway.config import Config


def routes_in_scope(config: Config, section: str, name: str, removal: bool) -> list[int]:
    """Indexes of the routes of ``config`` a write to ``section``/``name`` (not a route) can
    make valid or invalid. A route naming an upstream by id needs only that it exists: its
    compile does not depend on the upstream's settings, so only a removal concerns it."""
    if section == "ssls":
        return []
    if section == "global_rules":
        return list(range(len(config.routes)))
    if section == "upstreams":
        return [i for i, r in enumerate(config.routes) if r.plugins or (removal and r.upstream_id == name)]
    return [i for i, r in enumerate(config.routes) if r.plugins]
