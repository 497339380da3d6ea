"""Config files the tests check as a user's would be: written to disk, then loaded by the config
loader (the issues it reports) or by ``gateway check`` in a child process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, load_config
from gateway.plugins.registry import check_plugin_configs
from gateway.server.master import load_and_check
from tests.support.gateway import base_config
from tests.support.upstream import free_port


def write_config_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_plugin_config(tmp_path: Path, plugins: dict[str, Any],
                        consumers: list[dict[str, Any]] | None = None) -> Path:
    """A config whose one route carries ``plugins`` (its upstream is never reached), with
    ``consumers`` when given."""
    config: dict[str, Any] = base_config(free_port())
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": 9}]}]
    config["routes"] = [{"id": "r", "uri": "/*", "upstream_id": "up", "plugins": plugins}]
    if consumers is not None:
        config["consumers"] = consumers
    return write_config_file(tmp_path, config)


def config_issues(path: Path, full: bool = True) -> list[tuple[str, str]]:
    """Every issue the config loader reports; ``full`` also compiles the config (plugin bind
    errors), which only makes sense for schema-valid plugin configs."""
    with pytest.raises(ConfigError) as info:
        if full:
            load_and_check(str(path))
        else:
            load_config(path, extra_checks=(check_plugin_configs,))
    return [(issue.path, issue.message) for issue in info.value.issues]


def check_refuses_file(path: Path) -> str:
    """``gateway check -c path`` must refuse the file: what it printed."""
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    return result.stdout + result.stderr


def check_refuses(tmp_path: Path, config: dict[str, Any]) -> str:
    return check_refuses_file(write_config_file(tmp_path, config))


def check_refuses_plugins(tmp_path: Path, plugins: dict[str, Any]) -> str:
    return check_refuses_file(write_plugin_config(tmp_path, plugins))
