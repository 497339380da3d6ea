"""``fault-injection``: answers or delays a share of requests, to test how clients and services
cope (APISIX's plugin, names and defaults: ``abort`` {``http_status``, ``body``, ``headers``,
``percentage``, ``vars``}, ``delay`` {``duration``, ``percentage``, ``vars``}; at least one of
the two). Runs in ``rewrite``, before every other plugin's access: first the delay (if it
applies), then the abort (if it applies).

``percentage`` (0-100) is the share of requests affected (all when absent); ``vars`` limits it
to requests matching a lua-resty-expr style condition: a list of alternatives, each a list of
``[variable, operator, value]`` rules that must all hold, e.g.
``[[["arg_name", "==", "jack"], ["http_x_env", "~=", "prod"]], [["arg_debug", "==", "1"]]]``.
A bare rule in place of an alternative is an alternative of that one rule
(``[["arg_name", "==", "jack"]]``). Both ``percentage`` and ``vars`` must match. ``body`` and
header values may use ``$variables``.

Supported operators: ``==``, ``~=``, ``>``, ``>=``, ``<``, ``<=`` (numbers when the value is a
number), ``~~`` (regex search), ``~*`` (case-insensitive regex), ``in`` (value is a list),
``has`` (variable's comma/space separated items contain the value), and ``!`` before any of
them to negate (``["arg_x", "!", "==", "1"]``). Variables: see ``gateway.plugins._keys``
(``arg_*``, ``http_*``, ``cookie_*``, ``uri``, ``host``, ``remote_addr``, ``request_method``...).

Differs from APISIX: lua-resty-expr's ``ipmatch`` operator, nested ``AND``/``OR`` groups and
nginx variables the gateway does not expose are config errors rather than supported;
``delay.duration`` must be at most 3600 s.
"""
from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from gateway._proto import Response
from gateway.plugins._keys import template, var_getter
from gateway.plugins.base import Plugin, PluginConfig

Percentage = Annotated[int, msgspec.Meta(ge=0, le=100)]
Condition = Callable[[Any], bool]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _comparison(op: str, expected: Any) -> Callable[[str | None], bool]:
    if op in ("==", "~="):
        if isinstance(expected, (int, float)) and not isinstance(expected, bool):
            target = float(expected)
            equal: Callable[[str | None], bool] = lambda v: _number(v) == target  # noqa: E731
        else:
            text = str(expected).lower() if isinstance(expected, bool) else str(expected)
            equal = lambda v: v == text  # noqa: E731
        return equal if op == "==" else (lambda v: not equal(v))
    if op in (">", ">=", "<", "<="):
        bound = _number(expected)
        if bound is None:
            raise ValueError(f"operator '{op}' needs a number, got {expected!r}")
        compare = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__,
                   "<=": float.__le__}[op]

        def ordered(v: str | None) -> bool:
            n = _number(v)
            return n is not None and compare(n, bound)

        return ordered
    if op in ("~~", "~*"):
        try:
            pattern = re.compile(str(expected), re.IGNORECASE if op == "~*" else 0)
        except re.error as exc:
            raise ValueError(f"invalid regex {expected!r}: {exc}") from None
        return lambda v: v is not None and pattern.search(v) is not None
    if op == "in":
        if not isinstance(expected, list):
            raise ValueError("operator 'in' needs a list value")
        choices = {str(x) for x in expected}
        return lambda v: v in choices
    if op == "has":
        item = str(expected)
        return lambda v: v is not None and item in re.split(r"[,\s]+", v)
    if op == "ipmatch":
        raise ValueError("operator 'ipmatch' is not supported")
    raise ValueError(f"unknown operator '{op}'")


def compile_rule(rule: Any) -> Condition:
    if not isinstance(rule, list) or len(rule) not in (3, 4) or not isinstance(rule[0], str):
        raise ValueError(f"a rule is [variable, operator, value] (or with '!' before the "
                         f"operator), got {rule!r}")
    negate = len(rule) == 4
    if negate and rule[1] != "!":
        raise ValueError(f"a 4-item rule must be [variable, '!', operator, value], got {rule!r}")
    name, op, expected = rule[0], rule[-2], rule[-1]
    if not isinstance(op, str):
        raise ValueError(f"operator must be a string, got {op!r}")
    getter = var_getter(name)
    test = _comparison(op, expected)
    if negate:
        return lambda ctx: not test(getter(ctx))
    return lambda ctx: test(getter(ctx))


def compile_vars(alternatives: list[Any]) -> Condition:
    """``vars`` of APISIX's fault-injection: any alternative whose rules all hold."""
    compiled: list[tuple[Condition, ...]] = []
    for i, alternative in enumerate(alternatives):
        if not isinstance(alternative, list) or not alternative:
            raise ValueError(f"vars[{i}] must be a non-empty list of rules")
        if isinstance(alternative[0], str):
            if alternative[0].upper() in ("AND", "OR", "!AND", "!OR"):
                raise ValueError("nested AND/OR groups in vars are not supported; list "
                                 "alternatives at the top level instead")
            # a bare rule is an alternative of one rule
            alternative = [alternative]
        try:
            compiled.append(tuple(compile_rule(rule) for rule in alternative))
        except ValueError as exc:
            raise ValueError(f"vars[{i}]: {exc}") from None
    return lambda ctx: any(all(rule(ctx) for rule in rules) for rules in compiled)


class Abort(PluginConfig):
    http_status: Annotated[int, msgspec.Meta(ge=200, le=599)]
    body: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    percentage: Percentage | None = None
    vars: list[Any] | None = None


class Delay(PluginConfig):
    duration: Annotated[float, msgspec.Meta(gt=0, le=3600)]
    percentage: Percentage | None = None
    vars: list[Any] | None = None


class FaultInjectionConfig(PluginConfig):
    abort: Abort | None = None
    delay: Delay | None = None

    def __post_init__(self) -> None:
        if self.abort is None and self.delay is None:
            raise ValueError("one of abort or delay is required")
        for name, part in (("abort", self.abort), ("delay", self.delay)):
            if part is not None and part.vars is not None:
                try:
                    compile_vars(part.vars)
                except ValueError as exc:
                    raise ValueError(f"{name}.vars: {exc}") from None


def _sampler(percentage: int | None) -> Callable[[], bool]:
    if percentage is None or percentage >= 100:
        return lambda: True
    if percentage <= 0:
        return lambda: False
    share = percentage / 100.0
    rand = random.random
    return lambda: rand() < share


class FaultInjection(Plugin):
    name = "fault-injection"
    priority = 11000
    Config = FaultInjectionConfig
    config: FaultInjectionConfig

    def __init__(self, config: FaultInjectionConfig) -> None:
        super().__init__(config)
        abort, delay = config.abort, config.delay
        always: Condition = lambda ctx: True  # noqa: E731
        self.abort_hit = _sampler(abort.percentage) if abort else None
        self.abort_match = compile_vars(abort.vars) if abort and abort.vars else always
        self.delay_hit = _sampler(delay.percentage) if delay else None
        self.delay_match = compile_vars(delay.vars) if delay and delay.vars else always
        self.delay = delay.duration if delay else 0.0
        self.abort_response: Response | None = None
        self.abort_body: Callable[[Any], tuple[str, bool]] | None = None
        self.abort_headers: list[tuple[str, Callable[[Any], tuple[str, bool]]]] = []
        if abort is not None:
            dynamic = "$" in abort.body or any("$" in v for v in abort.headers.values())
            if dynamic:
                self.abort_body = template(abort.body)
                self.abort_headers = [(k, template(v)) for k, v in abort.headers.items()]
            else:
                self.abort_response = Response(abort.http_status, abort.body.encode(),
                                               list(abort.headers.items()))

    def _abort(self, ctx: Any) -> Response | None:
        if self.abort_hit is None or not self.abort_match(ctx) or not self.abort_hit():
            return None
        if self.abort_response is not None:
            return self.abort_response
        assert self.abort_body is not None and self.config.abort is not None
        headers = [(k, render(ctx)[0]) for k, render in self.abort_headers]
        return Response(self.config.abort.http_status, self.abort_body(ctx)[0].encode(), headers)

    def rewrite(self, ctx: Any) -> Any:
        if self.delay_hit is not None and self.delay_match(ctx) and self.delay_hit():
            return self._delayed(ctx)
        return self._abort(ctx)

    async def _delayed(self, ctx: Any) -> Response | None:
        await asyncio.sleep(self.delay)
        return self._abort(ctx)
