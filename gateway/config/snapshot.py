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


def dump_config(config: Config) -> str:
    """YAML text that loads back to an equal Config (for the last-known-good file).

    It holds expanded values, secrets included: write it with mode 0600.
    """
    data = _escape_env_refs(msgspec.to_builtins(config))
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text + END_MARKER + "\n"  # complete, whatever require_end_marker says


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
