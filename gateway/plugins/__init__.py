"""Plugins: ordinary Python classes running in-process on the request path.

The plugin API: :class:`Plugin` and :class:`PluginConfig` to write one, :class:`Context` (the
type of the ``ctx`` every phase method receives) and :class:`Response` (what ``rewrite`` /
``access`` return to answer a request).
"""
from gateway._proto import Response
from gateway.plugins.base import PHASES, Plugin, PluginConfig, PluginEnv, hook_chains
from gateway.plugins.context import Context

__all__ = ["PHASES", "Context", "Plugin", "PluginConfig", "PluginEnv", "Response", "hook_chains"]
