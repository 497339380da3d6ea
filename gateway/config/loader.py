"""The ways into a validated Config, each a short pipeline over the modules beside this one.

A YAML file: read -> compose the YAML node tree (source) -> duplicate keys (source) ->
expand `${VAR}` in string scalars (env_expand) -> construct plain data (source) -> file
checks (file_checks) -> normalise the APISIX shorthand forms (normalise) -> msgspec decode
into :class:`Config` (decode_errors when it fails) -> cross checks (cross_checks) -> the ssls'
certificate files read and checked (certificates) -> the caller's extra checks, in order; one
wrapped in `only_if_clean` runs only when nothing before it found an issue.

Problems are collected and raised together as one ConfigError. The master validates before
it sends a snapshot, so nothing here is on the request path; still, the happy path does one
YAML parse and one msgspec decode, and line numbers are only looked up when there is an issue.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from .certificates import inline_certificates
from .cross_checks import validate_config
from .decode_errors import describe_validation_error
from .env_expand import expand_env_in_tree
from .file_checks import FileChecks, file_issues
from .issues import ConfigError, ConfigIssue, issue_at
from .normalise import normalise
from .schema import Config
from .source import YamlDocument, decode_file, duplicate_keys, read_config_file, with_lines

__all__ = [
    "ExtraCheck",
    "decode_config",
    "default_config",
    "load_config",
    "only_if_clean",
    "parse_config_file",
    "parse_config_text",
]

#: A check the plugin system (or anything else) adds: (config, file name) -> issues.
ExtraCheck = Callable[[Config, str], list[ConfigIssue]]


@dataclass(frozen=True)
class _IfClean:
    check: ExtraCheck

    @property
    def __name__(self) -> str:
        return getattr(self.check, "__name__", repr(self.check))

    def __call__(self, config: Config, file: str) -> list[ConfigIssue]:
        return self.check(config, file)


def only_if_clean(check: ExtraCheck) -> ExtraCheck:
    """`check`, run only on a config in which no check before it found an issue: one that builds
    what a worker builds (opens the upstreams' tls files, instantiates the plugins) needs a
    config whose files were read and whose plugins load, and the checks before it already report
    what is not, each at its path."""
    return _IfClean(check)


def decode_config(data: Any, source: str = "<data>", extra_checks: Sequence[ExtraCheck] = ()) -> Config:
    """Validate already-parsed data (Admin API body, etcd) into a Config.

    No `${VAR}` expansion and no line numbers: those belong to files.
    """
    return _decode_and_check(data, source, None, extra_checks)


def parse_config_text(
    text: str,
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
    file_checks: FileChecks = FileChecks.NONE,
) -> Config:
    """Parse and validate a YAML document; raise ConfigError listing every issue.

    `file_checks` says whether the text is a whole config file, or one about to replace the
    running config; a string in code (the default) is neither.
    """
    env = os.environ if env is None else env
    with YamlDocument(text, source) as doc:
        issues: list[ConfigIssue] = []
        if doc.root is not None:
            issues.extend(duplicate_keys(doc.root, source))
            issues.extend(expand_env_in_tree(doc.root, env, source))
        data = doc.to_data()
        issues.extend(file_issues(text, data, source, file_checks))
        if issues:
            raise ConfigError(issues)
        return _decode_and_check(data, source, doc.root, extra_checks)


def parse_config_file(
    raw: bytes,
    name: str,
    env: Mapping[str, str] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
    file_checks: FileChecks = FileChecks.FILE,
) -> Config:
    """Validate the bytes of a config file (read once by the caller, who may hash them)."""
    return parse_config_text(decode_file(raw, name), name, env, extra_checks, file_checks)


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
) -> Config:
    """Load and validate a config file; raise ConfigError listing every issue."""
    name = os.fspath(path)
    return parse_config_file(read_config_file(name), name, env, extra_checks)


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The embedded default served by `gateway run` without -c."""
    text = importlib.resources.files("gateway.config").joinpath("default.yaml").read_text("utf-8")
    return parse_config_text(text, "<default.yaml>", env)


def _decode_and_check(
    data: Any, file: str, root: yaml.Node | None, extra_checks: Sequence[ExtraCheck]
) -> Config:
    """Plain data -> Config, through every check; `root` is the node tree lines come from."""
    data, issues = normalise({} if data is None else data, file)
    if issues:
        raise ConfigError(with_lines(issues, root))
    try:
        # strict=False: `port: ${PORT}` yields a string and the schema decides
        # it is an int; the type still rejects anything that is not a number.
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        path, message = describe_validation_error(exc, data)
        raise ConfigError(with_lines([issue_at(file, path, message)], root)) from None
    issues = validate_config(config, file)
    config, cert_issues = inline_certificates(config, file)
    issues += cert_issues
    issues += _run_extra_checks(config, file, extra_checks, clean=not issues)
    if issues:
        raise ConfigError(with_lines(issues, root))
    return config


def _run_extra_checks(config: Config, file: str, checks: Sequence[ExtraCheck],
                      clean: bool) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for check in checks:
        if isinstance(check, _IfClean) and (issues or not clean):
            continue
        try:
            issues.extend(check(config, file))
        except Exception as exc:  # a buggy check must not take the master down with a traceback
            message = f"check {getattr(check, '__name__', check)!r} failed: {exc!r}"
            issues.append(ConfigIssue(file=file, path="", message=message))
    return issues
