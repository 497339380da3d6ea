"""Gateway configuration: typed schema, YAML loading and validation, snapshots."""

from .addresses import is_ip, parse_listen, sni_candidates
from .cross_checks import validate_config
from .file_checks import FileChecks
from .issues import ConfigError, ConfigIssue, format_path
from .loader import (
    ExtraCheck,
    decode_config,
    default_config,
    load_config,
    parse_config_file,
    parse_config_text,
)
from .schema import (
    HTTP_METHODS,
    AdminSettings,
    Config,
    Consumer,
    GatewaySettings,
    GlobalRules,
    Keepalive,
    Node,
    Route,
    Ssl,
    SslClient,
    Timeout,
    Upstream,
)
from .snapshot import config_from_bytes, config_to_bytes, dump_config
from .source import read_config_file

__all__ = [
    "HTTP_METHODS",
    "AdminSettings",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Consumer",
    "ExtraCheck",
    "FileChecks",
    "GatewaySettings",
    "GlobalRules",
    "Keepalive",
    "Node",
    "Route",
    "Ssl",
    "SslClient",
    "Timeout",
    "Upstream",
    "config_from_bytes",
    "config_to_bytes",
    "decode_config",
    "default_config",
    "dump_config",
    "format_path",
    "is_ip",
    "load_config",
    "parse_config_file",
    "parse_config_text",
    "read_config_file",
    "parse_listen",
    "sni_candidates",
    "validate_config",
]
