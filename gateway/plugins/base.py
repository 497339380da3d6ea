"""The plugin contract: a plugin is a class with a name, a priority, a typed config schema and any
of the phase methods below. Phases run in priority order (higher first)."""
from __future__ import annotations

from typing import Any, ClassVar

import msgspec

PHASES: tuple[str, ...] = ("rewrite", "access", "before_proxy", "header_filter", "body_filter",
                           "log")


class PluginConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every plugin's config schema; validated when config loads, never per request."""


class Plugin:
    """Subclass this and define any of ``rewrite``, ``access``, ``before_proxy``,
    ``header_filter``, ``body_filter``, ``log``; each takes the request context. ``rewrite``,
    ``access`` and ``log`` may be ``async``. ``access`` (and ``rewrite``) may return a
    ``Response`` to answer the request. ``body_filter(ctx, chunk, last)`` returns the chunk to
    send (None keeps it); a route with one streams the body re-framed by the gateway."""

    name: ClassVar[str]
    priority: ClassVar[int] = 0
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def phases(cls) -> dict[str, str]:
        """The phases this plugin implements, mapped to their method names."""
        return {phase: phase for phase in PHASES if callable(getattr(cls, phase, None))}

    def __repr__(self) -> str:
        return f"<plugin {self.name} priority={self.priority}>"
