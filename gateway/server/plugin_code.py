"""Which plugin modules the running workers use, and whether their code changed since.

A reload that keeps a plugin but whose module file changed needs new worker processes (a module
is imported once per process). The master hashes the files of the modules that define the
plugins a config uses; the gateway's own modules are left out (a new gateway version is
deployed by a takeover, not a reload: the master would still run the old code).
"""
from __future__ import annotations

import hashlib
import importlib
import logging
import sys

from gateway.config import Config
from gateway.plugins import registry

log = logging.getLogger("gateway.master")


def plugin_names(config: Config) -> set[str]:
    names = set(config.global_plugins)
    for route in config.routes:
        names.update(route.plugins)
    for consumer in config.consumers:
        names.update(consumer.plugins)
    return names


def plugin_modules(config: Config) -> dict[str, str]:
    """Module name -> file of every third-party plugin module the config uses."""
    modules: dict[str, str] = {}
    for name in plugin_names(config):
        try:
            module_name = registry.get_plugin_class(name).__module__
        except Exception:  # noqa: BLE001 - the config check reports plugins that cannot load
            continue
        if module_name == "gateway" or module_name.startswith("gateway."):
            continue
        path = getattr(sys.modules.get(module_name), "__file__", None)
        if path:
            modules[module_name] = path
    return modules


def file_digest(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return ""


class PluginCode:
    """Digests of the plugin modules the workers imported."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.digests: dict[str, str] = {}

    def record(self, config: Config) -> None:
        self.files = plugin_modules(config)
        self.digests = {module: file_digest(path) for module, path in self.files.items()}

    def changed(self) -> list[str]:
        return sorted(module for module, path in self.files.items()
                      if file_digest(path) != self.digests[module])

    @staticmethod
    def reimport(modules: list[str]) -> None:
        """Imports the changed modules again in the master, so the new config is checked
        against the new code; raises what the import raises."""
        for module in modules:
            importlib.reload(sys.modules[module])
        for name, cls in list(registry._cache.items()):
            if cls.__module__ in modules:
                del registry._cache[name]
