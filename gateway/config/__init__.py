"""Gateway configuration: typed schema, YAML loading and validation, snapshots."""

from .addresses import is_ip, parse_listen, parse_nameserver, sni_candidates
from .cross_checks import validate_config
from .env_expand import expand_env_in_data
from .file_checks import FileChecks
from .issues import ConfigError, ConfigIssue, format_path
from .loader import (
    ExtraCheck,
    decode_config,
    default_config,
    load_config,
    only_if_clean,
    parse_config_file,
    parse_config_text,
)
from .schema import (
    GRPC_SCHEMES,
    HTTP_METHODS,
    ActiveCheck,
    AdminSettings,
    Checks,
    Config,
    Consumer,
    EtcdStore,
    GatewaySettings,
    GlobalRule,
    GlobalRules,
    Keepalive,
    Node,
    PassiveCheck,
    Route,
    Ssl,
    SslClient,
    Timeout,
    Upstream,
    UpstreamTls,
)
from .snapshot import config_from_bytes, config_to_bytes, dump_config
from .source import read_config_file

__all__ = [
    "GRPC_SCHEMES",
    "HTTP_METHODS",
    "ActiveCheck",
    "AdminSettings",
    "Checks",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Consumer",
    "EtcdStore",
    "ExtraCheck",
    "FileChecks",
    "GatewaySettings",
    "GlobalRule",
    "GlobalRules",
    "Keepalive",
    "Node",
    "PassiveCheck",
    "Route",
    "Ssl",
    "SslClient",
    "Timeout",
    "Upstream",
    "UpstreamTls",
    "config_from_bytes",
    "config_to_bytes",
    "decode_config",
    "default_config",
    "dump_config",
    "expand_env_in_data",
    "format_path",
    "is_ip",
    "load_config",
    "only_if_clean",
    "parse_config_file",
    "parse_config_text",
    "read_config_file",
    "parse_listen",
    "parse_nameserver",
    "sni_candidates",
    "validate_config",
]
