"""``api-breaker``: a circuit breaker in front of a route's upstream (APISIX's plugin, names and
defaults: ``break_response_code`` (required), ``break_response_body``,
``break_response_headers`` [{key, value}], ``max_breaker_sec`` 300, ``unhealthy``
{``http_statuses`` [500], ``failures`` 3}, ``healthy`` {``http_statuses`` [200],
``successes`` 3}).

After ``failures`` unhealthy responses from the upstream (without ``successes`` healthy ones in
a row in between) the breaker opens: requests are answered ``break_response_code`` without
reaching the upstream for 2 s. Then requests go through again (half open); each further run of
``failures`` unhealthy responses opens it for twice as long as the time before, up to
``max_breaker_sec``; ``successes`` healthy responses in a row close it and forget the
failures. Only responses of requests that reached the upstream stage count (a response this
plugin or another one generated does not; a 502/504 for an unreachable upstream does, as the
upstream status does in APISIX). The state is in the shared memory of ``env.limiter``, one
breaker per route for all worker processes.

Our extension: ``unhealthy.error_rate`` (0 < rate <= 1) also opens the breaker when, within a
sliding window of ``unhealthy.error_window`` seconds (default 10), at least
``unhealthy.min_requests`` (default 20) responses were counted and at least that share of them
had an unhealthy status. Counting restarts whenever the breaker opens or closes.

Differs from APISIX: the breaker is per route (APISIX keys it by request host and URI); header
values in ``break_response_headers`` may use ``$variables`` (see ``gateway.requestvars``).
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway._native import BREAKER_HEALTHY, BREAKER_TRIP, BREAKER_UNHEALTHY
from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv
from gateway.requestvars import Template, compile_template

UnhealthyStatus = Annotated[int, msgspec.Meta(ge=500, le=599)]
HealthyStatus = Annotated[int, msgspec.Meta(ge=200, le=499)]
COUNTER_MAX = (1 << 32) - 1


class Unhealthy(PluginConfig):
    http_statuses: Annotated[list[UnhealthyStatus], msgspec.Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [500])
    failures: Annotated[int, msgspec.Meta(ge=1, le=4095)] = 3
    error_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    min_requests: Annotated[int, msgspec.Meta(ge=1)] = 20
    error_window: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class Healthy(PluginConfig):
    http_statuses: Annotated[list[HealthyStatus], msgspec.Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [200])
    successes: Annotated[int, msgspec.Meta(ge=1, le=4095)] = 3


class BreakHeader(PluginConfig):
    key: Annotated[str, msgspec.Meta(min_length=1)]
    value: Annotated[str, msgspec.Meta(min_length=1)]


class ApiBreakerConfig(PluginConfig):
    break_response_code: Annotated[int, msgspec.Meta(ge=200, le=599)]
    break_response_body: str | None = None
    break_response_headers: list[BreakHeader] = msgspec.field(default_factory=list)
    max_breaker_sec: Annotated[float, msgspec.Meta(ge=3)] = 300.0
    unhealthy: Unhealthy = msgspec.field(default_factory=Unhealthy)
    healthy: Healthy = msgspec.field(default_factory=Healthy)

    def __post_init__(self) -> None:
        overlap = set(self.unhealthy.http_statuses) & set(self.healthy.http_statuses)
        if overlap:
            raise ValueError(f"statuses {sorted(overlap)} are both healthy and unhealthy")


class ApiBreaker(Plugin):
    name = "api-breaker"
    priority = 1005
    Config = ApiBreakerConfig
    config: ApiBreakerConfig

    def __init__(self, config: ApiBreakerConfig) -> None:
        super().__init__(config)
        self.failures = config.unhealthy.failures
        self.successes = config.healthy.successes
        self.max_open = float(config.max_breaker_sec)
        self.unhealthy = frozenset(config.unhealthy.http_statuses)
        self.healthy = frozenset(config.healthy.http_statuses)
        self.error_rate = config.unhealthy.error_rate
        self.min_requests = config.unhealthy.min_requests
        self.error_window = float(config.unhealthy.error_window)
        self.body = (config.break_response_body or "").encode()
        try:
            self.header_templates: list[tuple[str, Template]] = [
                (h.key, compile_template(h.value)) for h in config.break_response_headers]
        except ValueError as exc:
            raise ValueError(f"break_response_headers: {exc}") from None
        static = all(value.static for _, value in self.header_templates)
        self.static_response: Response | None = Response(
            config.break_response_code, self.body,
            [(h.key, h.value) for h in config.break_response_headers]) if static else None
        self.route_key: str | None = None
        self.limiter: Any = None

    def bind(self, env: PluginEnv) -> None:
        self.limiter = env.limiter
        if env.route_id is not None:
            self.route_key = f"api-breaker\x00{env.route_id}"

    def _key(self, ctx: Context) -> str:
        return self.route_key or f"api-breaker\x00{ctx.route_id}"

    def access(self, ctx: Context) -> Any:
        is_open = self.limiter.breaker_check(self._key(ctx), self.failures, self.max_open)[0]
        if not is_open:
            return None
        if self.static_response is not None:
            return self.static_response
        headers = [(name, value.render(ctx)) for name, value in self.header_templates]
        return Response(self.config.break_response_code, self.body, headers)

    def log(self, ctx: Context) -> None:
        if ctx.node is None:
            return  # answered before the upstream stage: not the upstream's health
        status = ctx.status
        if status in self.unhealthy:
            outcome = BREAKER_UNHEALTHY
        elif status in self.healthy:
            outcome = BREAKER_HEALTHY
        elif self.error_rate is None:
            return
        else:
            outcome = -1
        key = self._key(ctx)
        limiter = self.limiter
        if outcome >= 0:
            is_open, _, generation, _, _ = limiter.breaker_report(
                key, outcome, self.failures, self.successes, self.max_open)
        else:
            is_open, _, generation, _, _ = limiter.breaker_check(key, self.failures, self.max_open)
        if self.error_rate is None or is_open:
            return
        window_key = f"{key}\x00{generation}\x00"
        remaining_all = limiter.count(window_key + "all", COUNTER_MAX, self.error_window, 1,
                                      True)[1]
        error_cost = 1 if outcome == BREAKER_UNHEALTHY else 0
        remaining_errors = limiter.count(window_key + "err", COUNTER_MAX, self.error_window,
                                         error_cost, True)[1]
        total = COUNTER_MAX - remaining_all
        errors = COUNTER_MAX - remaining_errors
        if total >= self.min_requests and errors >= self.error_rate * total:
            limiter.breaker_report(key, BREAKER_TRIP, self.failures, self.successes,
                                   self.max_open, generation)
