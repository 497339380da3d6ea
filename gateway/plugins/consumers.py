"""Consumers (API clients) compiled for the data plane.

An authentication plugin on a route finds the consumer a credential belongs to through
``env.consumers.with_plugin(name)`` (built once per config version, so a lookup per request is a
dict access) and calls ``ctx.attach_consumer(entry)``. The consumer's own non-credential plugins
(e.g. a ``limit-count`` for that client) then join the request: a plugin the consumer and the
route both configure runs with the consumer's config (APISIX's merge rule), in priority order
with the route's remaining ``access`` hooks; their later phases run after the route's.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway._proto import NativeHook
from gateway.plugins.base import Hook, Plugin, hook_chains


class ConsumerEntry:
    """One consumer of a config version."""

    __slots__ = ("username", "group_id", "labels", "plugins", "credentials", "phase_hooks",
                 "_merged")

    def __init__(self, username: str, group_id: str | None, labels: dict[str, str],
                 plugins: dict[str, Plugin]) -> None:
        self.username = username
        self.group_id = group_id
        self.labels = labels
        #: name -> plugin instance for every plugin configured on the consumer
        self.plugins = plugins
        #: name -> config of the credential (authentication) plugins
        self.credentials = {n: p.config for n, p in plugins.items() if p.credential}
        #: phase -> bound hooks of the consumer's runnable plugins (priority order); they
        #: join a request from its access phase on
        self.phase_hooks: dict[str, tuple[Hook, ...]] = hook_chains(
            p for p in plugins.values() if not p.credential)
        self._merged: dict[tuple[Any, ...], tuple[Hook, ...]] = {}

    def merge_access(self, rest: tuple[Hook, ...]) -> tuple[Hook, ...]:
        """The route's remaining access hooks with this consumer's merged in by priority; a
        route plugin the consumer also configures is replaced by the consumer's."""
        merged = self._merged.get(rest)
        if merged is None:
            mine = self.phase_hooks["access"]
            names = {_plugin_of(h).name for h in mine}
            route_hooks = [h for h in rest if _plugin_of(h).name not in names]
            # Every consumer plugin runs, even one that outranks the auth plugin that attached
            # the consumer (APISIX authenticates before its access phase, so all of them do).
            merged = tuple(sorted(route_hooks + list(mine), key=lambda h: -_plugin_of(h).priority))
            self._merged[rest] = merged
        return merged

    def __repr__(self) -> str:
        return f"<consumer {self.username}>"


class ConsumerIndex:
    """The consumers of a config version, indexed by the plugins they configure."""

    def __init__(self, entries: Iterable[ConsumerEntry] = ()) -> None:
        self.entries: list[ConsumerEntry] = list(entries)
        self.by_name: dict[str, ConsumerEntry] = {e.username: e for e in self.entries}

    def with_plugin(self, name: str) -> list[tuple[ConsumerEntry, Any]]:
        """(consumer, that plugin's config on it) for every consumer configuring ``name``."""
        return [(e, e.plugins[name].config) for e in self.entries if name in e.plugins]

    def __len__(self) -> int:
        return len(self.entries)


def _plugin_of(hook: Hook) -> Plugin:
    plugin = hook.plugin if isinstance(hook, NativeHook) else getattr(hook, "__self__", None)
    assert isinstance(plugin, Plugin)
    return plugin
