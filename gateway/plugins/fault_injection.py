"""``fault-injection``: answers or delays a share of requests, to test how clients and services
cope (APISIX's plugin, names and defaults: ``abort`` {``http_status``, ``body``, ``headers``,
``percentage``, ``vars``}, ``delay`` {``duration``, ``percentage``, ``vars``}; at least one of
the two). Runs in ``rewrite``, before every other plugin's access: first the delay (if it
applies), then the abort (if it applies).

``percentage`` (0-100) is the share of requests affected (all when absent); ``vars`` limits it
to the requests one of its expressions matches: a list of alternatives, each a ``vars``
expression of :mod:`gateway.requestvars.expression` (conditions that must all hold, or an
``AND``/``OR`` tree), e.g.
``[[["arg_name", "==", "jack"], ["http_x_env", "~=", "prod"]], [["arg_debug", "==", "1"]]]``.
A bare condition in place of an alternative is an alternative of that one condition
(``[["arg_name", "==", "jack"]]``). Both ``percentage`` and ``vars`` must match. ``body`` and
header values may use ``$variables`` (:mod:`gateway.requestvars.table`).

Differs from APISIX: ``delay.duration`` must be at most 3600 s.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginConfig
from gateway.requestvars import Predicate, Template, compile_template
from gateway.requestvars import compile_vars as compile_expression

Percentage = Annotated[int, msgspec.Meta(ge=0, le=100)]
Condition = Callable[[Any], bool]


def compile_vars(alternatives: list[Any]) -> Condition:
    """``vars`` of APISIX's fault-injection: true when any alternative matches."""
    compiled: list[Predicate] = []
    for i, alternative in enumerate(alternatives):
        if not isinstance(alternative, list) or not alternative:
            raise ValueError(f"vars[{i}] must be a non-empty list of conditions")
        test = compile_expression(alternative, f"vars[{i}]")
        if test is None:
            return lambda ctx: True
        compiled.append(test)
    if len(compiled) == 1:
        return compiled[0]
    tests = tuple(compiled)
    return lambda ctx: any(test(ctx) for test in tests)


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
        self.abort_body: Template | None = None
        self.abort_headers: list[tuple[str, Template]] = []
        if abort is not None:
            body = compile_template(abort.body)
            headers = [(k, compile_template(v)) for k, v in abort.headers.items()]
            if not body.static or not all(value.static for _, value in headers):
                self.abort_body = body
                self.abort_headers = headers
            else:
                self.abort_response = Response(abort.http_status, abort.body.encode(),
                                               list(abort.headers.items()))

    def _abort(self, ctx: Context) -> Response | None:
        if self.abort_hit is None or not self.abort_match(ctx) or not self.abort_hit():
            return None
        if self.abort_response is not None:
            return self.abort_response
        assert self.abort_body is not None and self.config.abort is not None
        headers = [(k, value.render(ctx)) for k, value in self.abort_headers]
        return Response(self.config.abort.http_status, self.abort_body.render(ctx).encode(),
                        headers)

    def rewrite(self, ctx: Context) -> Any:
        if self.delay_hit is not None and self.delay_match(ctx) and self.delay_hit():
            return self._delayed(ctx)
        return self._abort(ctx)

    async def _delayed(self, ctx: Context) -> Response | None:
        await asyncio.sleep(self.delay)
        return self._abort(ctx)
