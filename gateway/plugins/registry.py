"""Finds plugin classes by name (built-ins, the ``gateway.plugins`` entry-point group) and
validates their configs with document paths."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

import msgspec

from gateway.config import Config, ConfigIssue
from gateway.plugins.base import Plugin

BUILTIN: dict[str, str] = {
    "mocking": "gateway.plugins.mocking:Mocking",
}

_cache: dict[str, type[Plugin]] = {}


def load_class(ref: str) -> type[Plugin]:
    module_name, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise TypeError(f"{ref} is not a gateway.plugins.Plugin subclass")
    return cls


def available() -> dict[str, str]:
    names = dict(BUILTIN)
    for ep in entry_points(group="gateway.plugins"):
        names.setdefault(ep.name, ep.value)
    return names


def get_plugin_class(name: str) -> type[Plugin]:
    """A plugin by name; a name written as an import path ("package.module:Class") loads that
    class directly, so a project's own plugins need no packaging."""
    cls = _cache.get(name)
    if cls is None:
        ref = name if ":" in name else available().get(name)
        if ref is None:
            raise KeyError(name)
        try:
            cls = load_class(ref)
        except (ImportError, AttributeError) as exc:
            if ":" in name:
                raise KeyError(name) from exc
            raise
        _cache[name] = cls
    return cls


def build_config(name: str, raw: Any) -> Any:
    """Decodes a plugin's raw config into its schema; raises ValueError with a readable reason."""
    cls = get_plugin_class(name)
    try:
        return msgspec.convert(raw if raw is not None else {}, cls.Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def instantiate(name: str, raw: Any) -> Plugin:
    cls = get_plugin_class(name)
    return cls(build_config(name, raw))


def _check_plugins(plugins: dict[str, Any], path: str, file: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for name, raw in plugins.items():
        where = f"{path}.{name}"
        try:
            get_plugin_class(name)
        except KeyError:
            issues.append(ConfigIssue(file=file, path=where, message=f"unknown plugin '{name}'",
                                      line=None))
            continue
        except Exception as exc:  # an installed third-party plugin that fails to import
            issues.append(ConfigIssue(file=file, path=where,
                                      message=f"plugin '{name}' cannot be loaded: {exc}", line=None))
            continue
        try:
            instantiate(name, raw)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            # msgspec reports "... - at `$.field`": turn it into our document path
            if " - at `$." in message:
                message, _, at = message.partition(" - at `$.")
                where = f"{where}.{at.rstrip('`')}"
            issues.append(ConfigIssue(file=file, path=where, message=message, line=None))
    return issues


def check_plugin_configs(config: Config, file: str) -> list[ConfigIssue]:
    """The config loader's extra check: every plugin exists and its config is valid."""
    issues: list[ConfigIssue] = []
    for i, route in enumerate(config.routes):
        issues += _check_plugins(route.plugins, f"routes[{i}].plugins", file)
    for i, consumer in enumerate(config.consumers):
        issues += _check_plugins(consumer.plugins, f"consumers[{i}].plugins", file)
    issues += _check_plugins(config.global_rules.plugins, "global_rules.plugins", file)
    return issues
