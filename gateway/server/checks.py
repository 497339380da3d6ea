"""What the master checks a candidate config with, beyond the loader's own checks: the plugins
load and accept their configs, rustls accepts every ssl's certificate and key (the loader reads
and checks them with `cryptography`; rustls is stricter, on key types and sizes for one), and
the config compiles
as a worker compiles it, so nothing that validates can fail later in a worker.

The OpenSSL check of the upstreams' tls settings and the compile check build what a worker
builds from the files the certificate checks read: they run only on a config in which nothing
was found before them (`only_if_clean`), never on one with unread files or unloadable plugins,
which the checks before them report at their paths."""
from __future__ import annotations

from gateway.config import (
    Config,
    ConfigError,
    ConfigIssue,
    FileChecks,
    only_if_clean,
    parse_config_file,
)
from gateway.plugins.registry import check_plugin_configs
from gateway.proxy.runtime import CompileError, compile_runtime
from gateway.server.tls import check_ssl_contexts
from gateway.upstream.tls import check_upstream_contexts


def compile_check(config: Config, file: str) -> list[ConfigIssue]:
    """The config must also compile (router patterns, balancer types)."""
    try:
        compile_runtime(config, 0)
    except CompileError as exc:
        return [ConfigIssue(file=file, path=exc.path, message=str(exc), line=None)]
    return []


def tls_check(config: Config, file: str) -> list[ConfigIssue]:
    """rustls must accept every ssl, so a worker never meets a certificate it cannot load."""
    return [ConfigIssue(file=file, path=f"ssls[{i}]", message=f"rustls refuses it: {reason}",
                        line=None)
            for i, reason in check_ssl_contexts(config.ssls)]


def upstream_tls_check(config: Config, file: str) -> list[ConfigIssue]:
    """OpenSSL must accept every https upstream's tls settings (client certificate, CA)."""
    return [ConfigIssue(file=file, path=f"upstreams[{i}].tls", line=None,
                        message=f"OpenSSL refuses these tls settings: {reason}")
            for i, reason in check_upstream_contexts(config.upstreams)]


CHECKS = (check_plugin_configs, tls_check, only_if_clean(upstream_tls_check),
          only_if_clean(compile_check))


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
