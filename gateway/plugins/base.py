"""The plugin contract.

A plugin is a class with a ``name``, a ``priority`` (higher runs first), a typed ``Config``
schema (a :class:`PluginConfig`, validated when the config loads, never per request) and any of
the phase methods below. Each phase method takes the request context ``ctx``, typed
:class:`gateway.plugins.Context` (what a plugin may read and call; the data plane's object
implements it):

``rewrite(ctx)``        after routing: change the upstream path, headers, query
``access(ctx)``         auth, limits, ACLs; may return a response to end the request
``before_proxy(ctx)``   the upstream node is chosen (again on each retry); edit the request
``header_filter(ctx)``  the upstream's response head arrived: change ``ctx.status`` / headers
``body_filter(ctx, chunk, last)``  each response body chunk; return the new chunk (None keeps it)
``log(ctx)``            after the response is sent: metrics, logs

``rewrite``, ``access`` and ``log`` may be ``async def`` when they must wait; everything else is
a plain function (it runs on the event loop, so it must not block). ``rewrite``/``access``
answer the request by returning ``Response(status, body, headers)`` (``gateway.plugins``), a
``(status, body[, headers])`` tuple, or an int status. Plugins share per-request state in
``ctx.state`` (a dict); request variables (``$host``, ``http_x_key``, ...) are read through
``gateway.requestvars``, resolved once when the plugin is built. An exception in a phase answers that
request 500 and logs the traceback; the worker keeps serving.

A plugin instance is built per config version; ``bind(env)`` is called once after all of them
are built, with the shared state of the worker (:class:`PluginEnv`). Per-route order can be
overridden in the config with ``_meta: {priority: N}``; ``_meta: {disable: true}`` turns a
plugin off without deleting its config (APISIX's keys).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

if TYPE_CHECKING:
    from gateway._native import SharedLimiter
    from gateway._proto import UpstreamGroup
    from gateway.plugins.consumers import ConsumerIndex

PHASES: tuple[str, ...] = ("rewrite", "access", "before_proxy", "header_filter", "body_filter",
                           "log")


class PluginConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every plugin's config schema. Raise ValueError in ``__post_init__`` for checks
    that need more than a type; the message reaches the user with the document path."""


@dataclass
class PluginEnv:
    """What a plugin may use beyond its own config, shared by every plugin of one worker's
    config version."""

    #: Token buckets and window counters in shared memory, exact across the worker processes.
    limiter: SharedLimiter
    #: Consumers and their plugin configs (credentials), by plugin name.
    consumers: ConsumerIndex
    #: Compiled upstream groups by ``upstreams[].id``.
    upstreams: dict[str, UpstreamGroup] = field(default_factory=dict)
    #: Shared-memory metrics store (gateway._native.SharedMetrics) when the process has one.
    metrics: Any = None
    #: The route this plugin instance is configured on (None: a global rule or a consumer).
    route_id: str | None = None
    #: Index of this worker (0..N-1); -1 in the master / ``gateway check``.
    worker_id: int = -1
    #: The current addresses of the host names in nodes (None: names are kept as they are).
    addresses: Mapping[str, Sequence[str]] | None = None
    #: ``plugin_metadata`` by plugin name, each as its plugin's ``Metadata`` struct. A write
    #: (file or Admin API) is a new config version, compiled again in every worker, so a
    #: plugin reads its metadata once, in ``bind``.
    plugin_metadata: Mapping[str, Any] = field(default_factory=dict)

    def compile_upstream(self, upstream: Any, label: str) -> UpstreamGroup:
        """An inline upstream (a dict in APISIX's shape or a config ``Upstream``) compiled to a
        group the data plane can proxy to (``ctx.set_upstream(group)``)."""
        from gateway.config.schema import Upstream
        from gateway.upstream.compile import compile_upstream
        if not isinstance(upstream, Upstream):
            upstream = msgspec.convert(upstream, Upstream, strict=False)
        return compile_upstream(upstream, label, addresses=self.addresses)


class Plugin:
    """Subclass this; see the module docstring for the phases."""

    name: ClassVar[str]
    priority: ClassVar[int] = 0
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    #: True for authentication plugins: on a consumer their config is a credential that
    #: identifies the consumer (e.g. key-auth's key), not a plugin to run.
    credential: ClassVar[bool] = False
    #: Compiled hooks by phase (built-in plugins set their own in ``__init__``): each runs the
    #: phase's common case in C and hands the rest to the plugin's method for that phase.
    native_hooks: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, config: Any) -> None:
        self.config = config
        #: the key the config document gives this plugin (its name, or an import path)
        self.config_key: str = self.name

    def bind(self, env: PluginEnv) -> None:
        """Called once per config version after every plugin is built."""

    def hook(self, phase: str) -> Callable[..., Any]:
        """What the exchange calls for ``phase``: the plugin's compiled hook for it when it has
        one (a ``gateway._proto.NativeHook`` in ``native_hooks``, called without a Python
        call), else the bound method."""
        native = self.native_hooks.get(phase)
        return native if native is not None else getattr(self, phase)

    @classmethod
    def phases(cls) -> dict[str, str]:
        """The phases this plugin implements, mapped to their method names."""
        return {phase: phase for phase in PHASES if callable(getattr(cls, phase, None))}

    def __repr__(self) -> str:
        return f"<plugin {self.name} priority={self.priority}>"


#: A bound phase method: ``hook(ctx)`` (``hook(ctx, chunk, last)`` for body_filter).
Hook = Callable[..., Any]


def hook_chains(plugins: Iterable[Plugin]) -> dict[str, tuple[Hook, ...]]:
    """The phase hooks of ``plugins``: for each phase, what the exchange calls for the plugins
    that implement it (``Plugin.hook``: a compiled hook or the bound method), highest priority
    first (ties keep the given order). The one builder of a route's chains and a consumer's."""
    ordered = sorted(plugins, key=lambda p: -p.priority)
    return {phase: tuple(p.hook(phase) for p in ordered if phase in p.phases())
            for phase in PHASES}
