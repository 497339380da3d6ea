"""atheris target on the config loader: YAML bytes, checked as the master checks a file (the
plugins' and the compiler's checks included), give either a Config or a ConfigError whose
every issue names the file, a document path (in the syntax users read, "routes[2].upstream_id")
and a reason; any other exception is a finding. An accepted config must also survive the two
ways it is written out: the last-known-good YAML file and the msgpack snapshot sent to workers.

    python fuzz/config_fuzz.py [-max_total_time=60] [corpus dirs...]   # libFuzzer's options

Seeds: fuzz/make_seeds.py writes fuzz/corpus/config/ (the README's examples, the default config).
"""
from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["gateway.config", "gateway.requestvars", "gateway.plugins"]):
    from gateway.config import Config, ConfigError
    from gateway.config.issues import parse_path
    from gateway.config.loader import parse_config_file, parse_config_text
    from gateway.config.snapshot import config_from_bytes, config_to_bytes, dump_config
    from gateway.server.master import CHECKS  # what the master checks a file with

NAME = "fuzz.yaml"
# ${VAR} references resolve against this environment only (the fuzzer's own would leak in).
ENV = {"PORT": "9080", "HOST": "127.0.0.1", "SECRET": "s3cret", "EMPTY": "", "GATEWAY_ADMIN_KEY": "k"}


def check(data: bytes) -> None:
    try:
        config = parse_config_file(data, NAME, env=ENV, extra_checks=CHECKS)
    except ConfigError as exc:
        assert exc.issues, "a ConfigError without issues"
        for issue in exc.issues:
            assert issue.file == NAME, issue
            assert issue.message, issue
            assert issue.path == "" or parse_path(issue.path) is not None, f"path {issue.path!r}"
            assert issue.line is None or issue.line >= 1, issue
            # the loader turns an exception in an extra check into an issue; it is still a bug
            assert not (issue.message.startswith("check ") and " failed: " in issue.message), issue
        return
    assert isinstance(config, Config)
    again = parse_config_text(dump_config(config), "last-good.yaml", env={})
    assert again == config, "the last-known-good dump does not load back to the same config"
    assert config_from_bytes(config_to_bytes(config)) == config


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
