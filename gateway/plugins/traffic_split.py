"""``traffic-split``: sends the requests a rule matches to weighted upstreams (canary and
blue-green releases), with APISIX's keys: ``rules: [{match: [{vars: [...]}],
weighted_upstreams: [{upstream_id | upstream, weight}]}]``.

Rules are tried in order; the first whose ``match`` holds (any of its ``vars`` expressions; no
``match`` at all holds for every request) picks one of its ``weighted_upstreams`` by smooth
weighted round robin. An entry with neither ``upstream_id`` nor ``upstream`` is the route's own
upstream. A request no rule matches goes to the route's upstream.

The round robin state is per worker process, as APISIX's is per nginx worker: with weights 1:9
every worker sends exactly one request in ten to the first upstream, so the split is exact over
any run, whatever the spread of requests over workers. Inline upstreams are compiled once per
config version; an unknown ``upstream_id`` is a config error. Inline ``nodes`` may be a list
(this gateway's shape) or APISIX's ``{"host:port": weight}`` map.
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.plugins import Context
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv
from gateway.requestvars import Predicate, compile_vars


def _nodes_as_list(upstream: dict[str, Any]) -> dict[str, Any]:
    """APISIX writes inline nodes as ``{"127.0.0.1:1980": 1}``; the schema wants a list."""
    nodes = upstream.get("nodes")
    if not isinstance(nodes, dict):
        return upstream
    listed = []
    for address, weight in nodes.items():
        host, sep, port = str(address).rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"node {address!r} must be written host:port")
        listed.append({"host": host.strip("[]"), "port": int(port), "weight": weight})
    return {**upstream, "nodes": listed}


class WeightedUpstream(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    upstream_id: str | int | None = None
    upstream: dict[str, Any] | None = None
    weight: Annotated[int, msgspec.Meta(ge=0)] = 1

    def __post_init__(self) -> None:
        if self.upstream_id is not None and self.upstream is not None:
            raise ValueError("give upstream_id or upstream, not both")
        if self.upstream is not None:
            from gateway.config.schema import Upstream
            self.upstream = _nodes_as_list(self.upstream)
            if "checks" in self.upstream:
                raise ValueError("upstream.checks: health checks need an upstream of their own: "
                                 "define it under `upstreams` and use upstream_id")
            try:
                msgspec.convert(self.upstream, Upstream, strict=False)
            except msgspec.ValidationError as exc:
                # msgspec's own "- at `$.x`" would be read as this entry's path: fold it in
                message, _, at = str(exc).partition(" - at `$.")
                where = f"upstream.{at.rstrip('`')}" if at else "upstream"
                raise ValueError(f"{where}: {message}") from None


class MatchRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    vars: list[Any] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        compile_vars(self.vars)


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    match: list[MatchRule] = msgspec.field(default_factory=list)
    weighted_upstreams: Annotated[list[WeightedUpstream], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        if not any(w.weight > 0 for w in self.weighted_upstreams):
            raise ValueError("weighted_upstreams: at least one weight must be > 0")


class TrafficSplitConfig(PluginConfig):
    rules: list[Rule] = msgspec.field(default_factory=list)


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: weights 1:9 give one pick of the first in every ten,
    spread out rather than bunched. ``None`` among the targets is the route's own upstream."""

    __slots__ = ("targets", "weights", "current", "total")

    def __init__(self, choices: list[tuple[Any, int]]) -> None:
        kept = [(target, weight) for target, weight in choices if weight > 0]
        self.targets = [target for target, _ in kept]
        self.weights = [weight for _, weight in kept]
        self.current = [0] * len(kept)
        self.total = sum(self.weights)

    def pick(self) -> Any:
        if len(self.targets) == 1:
            return self.targets[0]
        current, weights = self.current, self.weights
        best = 0
        for i in range(len(current)):
            current[i] += weights[i]
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return self.targets[best]


class TrafficSplit(Plugin):
    name = "traffic-split"
    priority = 966
    Config = TrafficSplitConfig

    def __init__(self, config: TrafficSplitConfig) -> None:
        super().__init__(config)
        self.matchers: list[tuple[Predicate, ...] | None] = []
        for i, rule in enumerate(config.rules):
            if not rule.match:
                self.matchers.append(None)
                continue
            tests: list[Predicate] = []
            for j, match in enumerate(rule.match):
                test = compile_vars(match.vars, f"rules[{i}].match[{j}].vars")
                if test is None:  # an empty vars matches everything: the rule always applies
                    tests = []
                    break
                tests.append(test)
            self.matchers.append(tuple(tests) if tests else None)
        self.rules: list[tuple[tuple[Predicate, ...] | None, SmoothWeightedRoundRobin]] = []

    def bind(self, env: PluginEnv) -> None:
        rules = []
        for i, rule in enumerate(self.config.rules):
            choices: list[tuple[Any, int]] = []
            for j, weighted in enumerate(rule.weighted_upstreams):
                where = f"rules[{i}].weighted_upstreams[{j}]"
                if weighted.upstream_id is not None:
                    group = env.upstreams.get(str(weighted.upstream_id))
                    if group is None:
                        raise ValueError(f"{where}.upstream_id: no upstream with id "
                                         f"'{weighted.upstream_id}'")
                elif weighted.upstream is not None:
                    label = f"{env.route_id or 'global'}/traffic-split/{i}/{j}"
                    group = env.compile_upstream(weighted.upstream, label)
                else:
                    group = None  # the route's own upstream
                choices.append((group, weighted.weight))
            rules.append((self.matchers[i], SmoothWeightedRoundRobin(choices)))
        self.rules = rules

    def access(self, ctx: Context) -> None:
        for tests, balancer in self.rules:
            if tests is None or any(test(ctx) for test in tests):
                group = balancer.pick()
                if group is not None:
                    ctx.set_upstream(group)
                return
