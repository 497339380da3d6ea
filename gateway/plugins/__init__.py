"""Plugins: ordinary Python classes running in-process on the request path."""
from gateway.plugins.base import PHASES, Plugin, PluginConfig

__all__ = ["PHASES", "Plugin", "PluginConfig"]
