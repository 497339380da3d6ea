"""A validated Config written out: as YAML for the last-known-good file, as msgpack for the
master -> worker pipe."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from .file_checks import END_MARKER
from .schema import Config

__all__ = ["config_from_bytes", "config_to_bytes", "dump_config"]

_Dumper = yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper
_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(Config)


#: Stands for the routes in the dump of the rest of the config (a plain scalar, unquoted).
_ROUTES_HERE = "gateway-dump-routes-placeholder"
#: id of a route -> (the route, its text as an item of the routes list)
RouteTexts = dict[int, tuple[Any, str]]


def dump_config(config: Config, route_texts: RouteTexts | None = None) -> str:
    """YAML text that loads back to an equal Config (for the last-known-good file).

    It holds expanded values, secrets included: write it with mode 0600. ``route_texts``: the
    routes' texts of the previous dump, reused for the routes that are the same objects (an
    Admin API write changes one route of thousands); updated to this dump's routes.
    """
    if route_texts is None or not config.routes:
        text = _dump(_escape_env_refs(msgspec.to_builtins(config)))
    else:
        rest = _escape_env_refs(msgspec.to_builtins(msgspec.structs.replace(config, routes=[])))
        rest["routes"] = _ROUTES_HERE
        items: list[str] = []
        texts: RouteTexts = {}
        for route in config.routes:
            known = route_texts.get(id(route))
            item = known[1] if known is not None and known[0] is route \
                else _dump([_escape_env_refs(msgspec.to_builtins(route))])
            texts[id(route)] = (route, item)
            items.append(item)
        route_texts.clear()
        route_texts.update(texts)
        text = _dump(rest).replace(f"routes: {_ROUTES_HERE}\n", "routes:\n" + "".join(items), 1)
    return text + END_MARKER + "\n"  # complete, whatever require_end_marker says


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _escape_env_refs(obj: Any) -> Any:
    # Values are already expanded; escape `${` so loading the dump does not expand them again.
    if isinstance(obj, str):
        return obj.replace("${", "$${")
    if isinstance(obj, list):
        return [_escape_env_refs(v) for v in obj]
    if isinstance(obj, dict):
        return {_escape_env_refs(k): _escape_env_refs(v) for k, v in obj.items()}
    return obj


def config_to_bytes(config: Config) -> bytes:
    """Snapshot for the master -> worker pipe."""
    return _msgpack_encoder.encode(config)


def config_from_bytes(data: bytes) -> Config:
    """Inverse of config_to_bytes. No cross checks: snapshots are validated before they are sent."""
    return _msgpack_decoder.decode(data)
