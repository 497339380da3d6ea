"""Finds plugin classes by name (built-ins, the ``gateway.plugins`` entry-point group) and
validates their configs with document paths."""
from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

import msgspec

from gateway.config import Config, ConfigIssue, format_path
from gateway.config.issues import Segment
from gateway.plugins.base import Plugin

BUILTIN: dict[str, str] = {
    # authentication and authorisation
    "key-auth": "gateway.plugins.key_auth:KeyAuth",
    "basic-auth": "gateway.plugins.basic_auth:BasicAuth",
    "jwt-auth": "gateway.plugins.jwt_auth:JwtAuth",
    "consumer-restriction": "gateway.plugins.consumer_restriction:ConsumerRestriction",
    # traffic control
    "limit-req": "gateway.plugins.limit_req:LimitReq",
    "limit-count": "gateway.plugins.limit_count:LimitCount",
    "limit-conn": "gateway.plugins.limit_conn:LimitConn",
    "api-breaker": "gateway.plugins.api_breaker:ApiBreaker",
    "traffic-split": "gateway.plugins.traffic_split:TrafficSplit",
    "fault-injection": "gateway.plugins.fault_injection:FaultInjection",
    "request-size-limit": "gateway.plugins.request_size_limit:RequestSizeLimit",
    # transformation
    "proxy-rewrite": "gateway.plugins.proxy_rewrite:ProxyRewrite",
    "response-rewrite": "gateway.plugins.response_rewrite:ResponseRewrite",
    "cors": "gateway.plugins.cors:Cors",
    "request-id": "gateway.plugins.request_id:RequestId",
    "mocking": "gateway.plugins.mocking:Mocking",
    # security
    "ip-restriction": "gateway.plugins.ip_restriction:IpRestriction",
    "ua-restriction": "gateway.plugins.ua_restriction:UaRestriction",
    # observability
    "prometheus": "gateway.plugins.prometheus:Prometheus",
}

_cache: dict[str, type[Plugin]] = {}


class PluginLoadError(Exception):
    """A plugin that exists but cannot be imported (its module, or something it imports, fails)."""


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
        except Exception as exc:  # a plugin module may fail in any way while importing
            if ":" in name and _names_a_missing_thing(ref, exc):
                raise KeyError(name) from exc
            raise PluginLoadError(
                f"plugin '{name}' cannot be loaded: {type(exc).__name__}: {exc}") from exc
        _cache[name] = cls
    return cls


def _names_a_missing_thing(ref: str, exc: BaseException) -> bool:
    """True when the import path itself is wrong (no such module or class), as opposed to a
    module that exists and fails while importing."""
    module_name, _, attr = ref.partition(":")
    if isinstance(exc, ModuleNotFoundError):
        missing = exc.name or ""
        return module_name == missing or module_name.startswith(missing + ".")
    return isinstance(exc, AttributeError) and getattr(exc, "name", None) == attr


class PluginMeta(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``_meta`` in a plugin's config (APISIX's key): settings of the plugin's place in the
    chain rather than of the plugin."""
    priority: int | None = None
    disable: bool = False


def split_meta(raw: Any) -> tuple[Any, PluginMeta]:
    if isinstance(raw, dict) and "_meta" in raw:
        raw = dict(raw)
        try:
            meta = msgspec.convert(raw.pop("_meta") or {}, PluginMeta, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{exc} - at `$._meta`") from None
        return raw, meta
    return raw, PluginMeta()


def build_config(name: str, raw: Any) -> Any:
    """Decodes a plugin's raw config into its schema; raises ValueError with a readable reason."""
    cls = get_plugin_class(name)
    raw, _ = split_meta(raw)
    try:
        return msgspec.convert(raw if raw is not None else {}, cls.Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def instantiate(name: str, raw: Any) -> Plugin | None:
    """The plugin with its config, its priority overridden by ``_meta.priority``; None when
    ``_meta.disable`` turns it off."""
    cls = get_plugin_class(name)
    _, meta = split_meta(raw)
    plugin = cls(build_config(name, raw))
    if meta.disable:
        return None
    if meta.priority is not None:
        plugin.priority = meta.priority  # type: ignore[misc]  # per-instance override
    return plugin


_MSGSPEC_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\[\.\.\.\])")


def _value_issue(base: Sequence[Segment], raw: Any, message: str, file: str) -> ConfigIssue:
    """A plugin config's or metadata's msgspec error ("... - at `$.a[0].b`") as an issue at its
    document path. msgspec writes a dict's key as ``[...]``: the key is named when the dict has
    only one, else the issue points at the dict."""
    path: list[Segment] = list(base)
    if " - at `$" in message:
        message, _, at = message.partition(" - at `$")
        data = raw
        for m in _MSGSPEC_STEP.finditer(at.rstrip("`")):
            if m.group(3) is not None:
                if not (isinstance(data, dict) and len(data) == 1):
                    break
                key = next(iter(data))
                path.append(str(key))
                data = data[key]
                continue
            seg: Segment = m.group(1) if m.group(1) is not None else int(m.group(2))
            path.append(seg)
            try:
                data = data[seg]
            except (KeyError, IndexError, TypeError):
                data = None
    return ConfigIssue(file=file, path=format_path(path), message=message, line=None)


def _check_plugins(plugins: dict[str, Any], path: tuple[str | int, ...], file: str
                   ) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for name, raw in plugins.items():
        where = format_path((*path, name))  # a name may need quoting: 'plugins["a.b"]'
        try:
            get_plugin_class(name)
        except KeyError:
            issues.append(ConfigIssue(file=file, path=where, message=f"unknown plugin '{name}'",
                                      line=None))
            continue
        except PluginLoadError as exc:
            issues.append(ConfigIssue(file=file, path=where, message=str(exc), line=None))
            continue
        try:
            instantiate(name, raw)
        except (ValueError, TypeError) as exc:
            issues.append(_value_issue((*path, name), raw, str(exc), file))
    return issues


def check_plugin_configs(config: Config, file: str) -> list[ConfigIssue]:
    """The config loader's extra check: every plugin exists and its config is valid."""
    issues: list[ConfigIssue] = []
    for i, route in enumerate(config.routes):
        issues += _check_plugins(route.plugins, ("routes", i, "plugins"), file)
    for i, consumer in enumerate(config.consumers):
        issues += _check_plugins(consumer.plugins, ("consumers", i, "plugins"), file)
    if isinstance(config.global_rules, list):
        for i, rule in enumerate(config.global_rules):
            issues += _check_plugins(rule.plugins, ("global_rules", i, "plugins"), file)
    else:
        issues += _check_plugins(config.global_rules.plugins, ("global_rules", "plugins"), file)
    for name, metadata in config.plugin_metadata.items():
        issues += _check_metadata(name, metadata, format_path(("plugin_metadata", name)), file)
    return issues


def metadata_schema(name: str) -> type[msgspec.Struct] | None:
    """A plugin's ``Metadata`` schema (settings shared by all its instances); None when it has
    none. Raises KeyError for an unknown plugin."""
    schema = getattr(get_plugin_class(name), "Metadata", None)
    return schema if isinstance(schema, type) and issubclass(schema, msgspec.Struct) else None


def _check_metadata(name: str, metadata: Any, where: str, file: str) -> list[ConfigIssue]:
    # As in APISIX: metadata is accepted only by a plugin that declares a schema for it.
    try:
        schema = metadata_schema(name)
    except (KeyError, PluginLoadError):
        return [ConfigIssue(file=file, path=where, message=f"unknown plugin '{name}'", line=None)]
    if schema is None:
        return [ConfigIssue(file=file, path=where, message=f"plugin '{name}' takes no metadata",
                            line=None)]
    try:
        msgspec.convert(metadata, schema, strict=False)
    except msgspec.ValidationError as exc:
        return [_value_issue(("plugin_metadata", name), metadata, str(exc), file)]
    return []
