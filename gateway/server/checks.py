"""The checks a config goes through before any worker sees it, whatever its source (a file, the
Admin API, etcd): the loader's, plus that it compiles and that OpenSSL takes its certificates, so
nothing that validates can fail later in a worker."""
from __future__ import annotations

import ssl

from gateway.config import Config, ConfigError, ConfigIssue, FileChecks, parse_config_file
from gateway.plugins.registry import PluginLoadError, check_plugin_configs
from gateway.proxy.runtime import CompileError, compile_runtime
from gateway.server.tls import check_ssl_contexts


def compile_check(config: Config, file: str) -> list[ConfigIssue]:
    """Extra check run with the config loader: the config must also compile (router patterns,
    balancer types), so nothing that validates can fail later in a worker."""
    try:
        compile_runtime(config, 0)
    except CompileError as exc:
        return [ConfigIssue(file=file, path=exc.path, message=str(exc), line=None)]
    except (ValueError, TypeError, KeyError, ImportError, PluginLoadError):
        return []  # a plugin that cannot be built: check_plugin_configs reports it with its path
    except ssl.SSLError as exc:  # files the certificate checks accepted, refused by OpenSSL
        return [ConfigIssue(file=file, path="", message=f"OpenSSL refuses an upstream's tls "
                            f"settings: {exc}", line=None)]
    except OSError:
        return []  # an unreadable tls file: the certificate checks report it with its path
    return []


def tls_check(config: Config, file: str) -> list[ConfigIssue]:
    """Extra check: OpenSSL must accept every ssl (the loader checked the PEM with
    `cryptography`), so a worker never meets a certificate it cannot load."""
    return [ConfigIssue(file=file, path=f"ssls[{i}]", message=f"OpenSSL refuses it: {reason}",
                        line=None)
            for i, reason in check_ssl_contexts(config.ssls)]


CHECKS = (check_plugin_configs, compile_check, tls_check)


def load_and_check(path: str) -> Config:
    with open(path, "rb") as fh:
        raw = fh.read()
    return parse_config_file(raw, path, extra_checks=CHECKS)


def check_bytes(raw: bytes, path: str, file_checks: FileChecks = FileChecks.FILE) -> Config:
    return parse_config_file(raw, path, extra_checks=CHECKS, file_checks=file_checks)


def check_file_mode(config: Config, file: str) -> Config:
    """A reload in file mode cannot switch to etcd: the store is chosen at start."""
    if config.gateway.etcd is not None:
        raise ConfigError([ConfigIssue(file=file, path="gateway.store",
                                       message="the store changes only on restart")])
    return config
