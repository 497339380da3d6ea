"""APISIX standalone config (``apisix.yaml``) to this gateway's config.

Services and plugin_configs have no resource of their own here: they are inlined into the
routes that name them (APISIX's precedence: the route's own plugins win over its
plugin_config's, which win over its service's; the route's upstream and hosts win over the
service's). Everything else maps one to one onto the schema's resources of the same name, and
whatever the schema or the plugin registry does not know is listed as :class:`Unsupported`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.config.schema import Consumer, GlobalRule, Route, Ssl, Upstream
from gateway.migrate.schema_walk import DocPath, Unsupported, keep_supported
from gateway.plugins import registry

#: Sections read here; anything else at the top level is reported whole.
SECTIONS = ("routes", "services", "upstreams", "plugin_configs", "consumers", "global_rules",
            "ssls", "plugin_metadata")
#: What a service gives the routes that name it; other service fields are reported.
SERVICE_FIELDS = ("id", "name", "desc", "upstream", "upstream_id", "plugins", "hosts",
                  "enable_websocket")


#: APISIX's environment references in apisix.yaml, ``${{NAME}}`` and ``${{NAME:=default}}``;
#: any other ``${`` is literal text there.
_APISIX_ENV = re.compile(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(:=[^}]*)?\}\}|\$\{")


@dataclass
class Conversion:
    config: dict[str, Any]
    unsupported: list[Unsupported] = field(default_factory=list)


def convert(document: Any) -> Conversion:
    result = Conversion({})
    out = result.unsupported
    if not isinstance(document, dict):
        out.append(Unsupported((), "not a mapping of APISIX sections"))
        return result
    for key in document:
        if key not in SECTIONS:
            out.append(Unsupported((key,), "section not supported"))
    upstreams = _upstreams(_items(document, "upstreams", out), out)
    services = {_id(s): _service(s, ("services", i), out)
                for i, s in _items(document, "services", out)}
    plugin_config_items = _items(document, "plugin_configs", out)
    plugin_configs = {_id(p): _plugins(p.get("plugins"), ("plugin_configs", i, "plugins"), out)
                      for i, p in plugin_config_items}
    for i, p in plugin_config_items:
        for key in p:
            if key not in ("id", "plugins", "desc", "labels", "name"):
                out.append(Unsupported(("plugin_configs", i, key), "field not supported"))
    _hoist_service_upstreams(services, upstreams)
    kept_ids = {u["id"] for u in upstreams}
    routes = [r for i, raw in _items(document, "routes", out)
              if (r := _route(raw, i, services, plugin_configs, kept_ids, out)) is not None]
    consumers = [_with_plugins(c, Consumer, ("consumers", i), out)
                 for i, c in _items(document, "consumers", out)]
    rules = document.get("global_rules")
    global_rules: Any
    if isinstance(rules, dict):  # this gateway's one-rule form, also accepted
        global_rules = {"plugins": _plugins(rules.get("plugins"), ("global_rules", "plugins"), out)}
    else:
        global_rules = [_with_plugins({**r, "id": _id(r)}, GlobalRule, ("global_rules", i), out)
                        for i, r in _items(document, "global_rules", out)]
    ssls = [keep_supported(_ssl(s), Ssl, ("ssls", i), out)
            for i, s in _items(document, "ssls", out)]
    metadata = _metadata(_items(document, "plugin_metadata", out), out)
    for key, value in (("upstreams", upstreams), ("routes", routes), ("consumers", consumers),
                       ("global_rules", global_rules), ("ssls", ssls),
                       ("plugin_metadata", metadata)):
        if value:
            result.config[key] = _env_references(value)
    return result


def _env_references(value: Any) -> Any:
    """APISIX's ``${{NAME}}`` as this loader's ``${NAME}``; a literal ``${`` escaped as ``$${``."""
    if isinstance(value, str):
        return _APISIX_ENV.sub(
            lambda m: "$${" if m.group(1) is None else f"${{{m.group(1)}{m.group(2) or ''}}}",
            value)
    if isinstance(value, dict):
        return {k: _env_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_references(v) for v in value]
    return value


def _items(document: dict[str, Any], section: str, out: list[Unsupported]
           ) -> list[tuple[int, dict[str, Any]]]:
    value = document.get(section)
    if value is None:
        return []
    if not isinstance(value, list):
        out.append(Unsupported((section,), "expected a list"))
        return []
    items = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            items.append((i, item))  # with its index: paths name the item in the document
        else:
            out.append(Unsupported((section, i), "expected a mapping: skipped"))
    return items


def _id(obj: dict[str, Any]) -> str:
    # APISIX writes ids as numbers or strings; here they are strings.
    value = obj.get("id")
    return "" if value is None else str(value)


def _plugins(plugins: Any, path: DocPath, out: list[Unsupported]) -> dict[str, Any]:
    """The plugins this gateway has, each config without the fields its schema lacks."""
    if not isinstance(plugins, dict):
        return {}
    available = registry.available()
    kept: dict[str, Any] = {}
    for name, conf in plugins.items():
        if name not in available:
            out.append(Unsupported((*path, name), "plugin not available in this gateway"))
            continue
        if not isinstance(conf, dict | None):
            kept[name] = conf  # the checker says what is wrong with it
            continue
        conf = dict(conf or {})
        meta = conf.pop("_meta", None)
        if "disable" in conf:  # APISIX 2's switch, `_meta.disable` since 3.0: the plugin stays off
            meta = {**(meta or {}), "disable": conf.pop("disable")}
        conf = keep_supported(conf, registry.get_plugin_class(name).Config, (*path, name), out)
        if meta is not None:
            meta = keep_supported(meta, registry.PluginMeta, (*path, name, "_meta"), out)
            conf["_meta"] = meta
        kept[name] = conf
    return kept


def _with_plugins(obj: dict[str, Any], schema: Any, path: DocPath,
                  out: list[Unsupported]) -> dict[str, Any]:
    kept = keep_supported({k: v for k, v in obj.items() if k != "plugins"}, schema, path, out)
    if "plugins" in obj:
        kept["plugins"] = _plugins(obj["plugins"], (*path, "plugins"), out)
    return kept


def _upstream(raw: dict[str, Any], path: DocPath, out: list[Unsupported]) -> dict[str, Any] | None:
    kept = keep_supported(raw, Upstream, path, out)
    if not kept.get("nodes"):
        # discovery_type/service_name have already been listed as unsupported fields
        out.append(Unsupported(path, "no nodes (service discovery is not supported): dropped"))
        return None
    return kept


def _upstreams(items: list[tuple[int, dict[str, Any]]], out: list[Unsupported]
               ) -> list[dict[str, Any]]:
    kept = []
    for i, raw in items:
        upstream = _upstream({**raw, "id": _id(raw)}, ("upstreams", i), out)
        if upstream is not None:
            kept.append(upstream)
    return kept


def _service(raw: dict[str, Any], path: DocPath, out: list[Unsupported]) -> dict[str, Any]:
    """What the service lends to its routes, cleaned once (reported at the service's path)."""
    service: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in SERVICE_FIELDS:
            out.append(Unsupported((*path, key), "field not supported"))
        elif key == "plugins":
            service["plugins"] = _plugins(value, (*path, "plugins"), out)
        elif key == "upstream" and isinstance(value, dict):
            upstream = _upstream(value, (*path, "upstream"), out)
            if upstream is not None:
                service["upstream"] = upstream
        elif key == "upstream_id":
            service["upstream_id"] = str(value)
        elif key in ("hosts", "enable_websocket"):
            service[key] = value
    return service


def _hoist_service_upstreams(services: dict[str, dict[str, Any]],
                             upstreams: list[dict[str, Any]]) -> None:
    """A service's inline upstream becomes a top-level one its routes name: in APISIX the
    service's routes share it (one set of health checks, one connection pool), and inlining a
    copy into each route would split them."""
    taken = {u["id"] for u in upstreams}
    for service_id, service in services.items():
        upstream = service.pop("upstream", None)
        if upstream is None:
            continue
        name, n = f"service-{service_id}", 1
        while name in taken:
            n += 1
            name = f"service-{service_id}-{n}"
        taken.add(name)
        upstreams.append({"id": name, **{k: v for k, v in upstream.items() if k != "id"}})
        service.setdefault("upstream_id", name)


def _route(raw: dict[str, Any], i: int, services: dict[str, dict[str, Any]],
           plugin_configs: dict[str, dict[str, Any]], upstream_ids: set[str],
           out: list[Unsupported]) -> dict[str, Any] | None:
    path: DocPath = ("routes", i)
    route = {k: v for k, v in raw.items() if k not in ("service_id", "plugin_config_id", "plugins")}
    route["id"] = _id(raw) or f"route-{i}"
    if "upstream_id" in route:
        route["upstream_id"] = str(route["upstream_id"])
    if isinstance(route.get("upstream"), dict):
        upstream = _upstream(route["upstream"], (*path, "upstream"), out)
        if upstream is None:
            del route["upstream"]
        else:
            route["upstream"] = upstream
    route = keep_supported(route, Route, path, out)
    plugins: dict[str, Any] = {}
    if "service_id" in raw:
        service = services.get(str(raw["service_id"]))
        if service is None:
            out.append(Unsupported((*path, "service_id"),
                                   f"service {raw['service_id']!r} not found: route dropped"))
            return None
        plugins.update(service.get("plugins", {}))
        if "upstream" not in route and "upstream_id" not in route:
            for key in ("upstream", "upstream_id"):
                if key in service:
                    route[key] = service[key]
        if "hosts" in service and "host" not in route and "hosts" not in route:
            route["hosts"] = service["hosts"]
        if "enable_websocket" in service and "enable_websocket" not in route:
            route["enable_websocket"] = service["enable_websocket"]
    if "plugin_config_id" in raw:
        config = plugin_configs.get(str(raw["plugin_config_id"]))
        if config is None:
            out.append(Unsupported((*path, "plugin_config_id"),
                                   f"plugin_config {raw['plugin_config_id']!r} not found: "
                                   "its plugins are missing"))
        else:
            plugins.update(config)
    plugins.update(_plugins(raw.get("plugins"), (*path, "plugins"), out))
    if plugins:
        route["plugins"] = plugins
    if "upstream_id" in route and route["upstream_id"] not in upstream_ids:
        out.append(Unsupported(path, f"its upstream {route['upstream_id']!r} was not imported: "
                                     "route dropped"))
        return None
    if "upstream" not in route and "upstream_id" not in route and not _answers_itself(plugins):
        out.append(Unsupported(path, "no upstream left to proxy to: route dropped"))
        return None
    return route


def _answers_itself(plugins: dict[str, Any]) -> bool:
    """A route without an upstream still works when a plugin answers every request."""
    return "mocking" in plugins


def _ssl(raw: dict[str, Any]) -> dict[str, Any]:
    ssl = {**raw, "id": _id(raw)}
    if "sni" in ssl and "snis" not in ssl:
        ssl["snis"] = [ssl.pop("sni")]
    return ssl


def _metadata(items: list[tuple[int, dict[str, Any]]], out: list[Unsupported]) -> dict[str, Any]:
    """APISIX lists metadata as ``{id: <plugin name>, ...}``; here it is a map by plugin name."""
    kept: dict[str, Any] = {}
    for i, raw in items:
        name = _id(raw)
        path: DocPath = ("plugin_metadata", i)
        try:
            schema = registry.metadata_schema(name)
        except (KeyError, registry.PluginLoadError):
            out.append(Unsupported(path, f"plugin {name!r} not available in this gateway"))
            continue
        if schema is None:
            out.append(Unsupported(path, f"plugin {name!r} takes no metadata here"))
            continue
        kept[name] = keep_supported({k: v for k, v in raw.items() if k != "id"}, schema, path, out)
    return kept
