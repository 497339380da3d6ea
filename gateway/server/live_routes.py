"""``gateway routes``: what a running gateway serves, asked of its master through the admin
listener (the routes of the master's config version, and the version each worker runs)."""
from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path
from typing import Any

from gateway.admin.auth import KEY_FILE
from gateway.config import AdminSettings, ConfigError, parse_config_text, parse_listen
from gateway.server.running import NotRunning, master_pid, status_file


class AdminUnreachable(Exception):
    """The admin listener did not answer as expected; the message says what happened."""


def admin_settings(config_path: str | None, status: Path) -> tuple[AdminSettings, Path]:
    """The admin listener and key of the config the master runs (its last good copy, which is
    what it serves even when the file was edited since), and the state dir it keeps keys in."""
    instance_dir = status.parent
    state_dir = instance_dir.parent.parent
    for candidate in (instance_dir / "last-good.yaml", Path(config_path) if config_path else None):
        if candidate is None:
            continue
        try:
            config = parse_config_text(candidate.read_text(encoding="utf-8"), str(candidate))
        except (OSError, ConfigError):
            continue
        return config.gateway.admin, Path(config.gateway.state_dir or state_dir)
    return AdminSettings(), state_dir


def admin_get(settings: AdminSettings, state_dir: Path, path: str) -> Any:
    key = settings.key or (state_dir / KEY_FILE).read_text(encoding="utf-8").strip()
    host, port = parse_listen(settings.listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path, headers={"X-API-KEY": key})
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        raise AdminUnreachable(f"admin listener {settings.listen}: {exc}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise AdminUnreachable(f"admin listener {settings.listen}: GET {path} answered "
                               f"{response.status}: {body[:200].decode(errors='replace')}")
    return json.loads(body)


def live_routes(config_path: str | None) -> dict[str, Any]:
    """``{"master": {...}, "workers": [...], "routes": [...]}`` of the running gateway."""
    pid = master_pid(config_path)
    status = status_file(config_path)
    settings, state_dir = admin_settings(config_path, status)
    try:
        report = admin_get(settings, state_dir, "/status")
        routes = admin_get(settings, state_dir, "/apisix/admin/routes")
    except OSError as exc:  # the key file
        raise AdminUnreachable(f"cannot read the admin key: {exc}") from None
    return {"master": {**report["master"], "pid": pid}, "workers": report["workers"],
            "routes": [item["value"] for item in routes["list"]]}


def _describe_upstream(route: dict[str, Any]) -> str:
    if route.get("upstream_id"):
        return str(route["upstream_id"])
    upstream = route.get("upstream")
    if upstream:
        nodes = upstream.get("nodes") or []
        # the Admin API shows a route as written: APISIX's {"host:port": weight} form, or a list
        names = nodes if isinstance(nodes, dict) else [f"{n['host']}:{n['port']}" for n in nodes]
        return "inline: " + ",".join(names)
    return "-"


def _column(values: list[str] | None) -> str:
    return ",".join(values) if values else "*"


def _etcd(process: dict[str, Any]) -> str:
    """In etcd mode, the etcd revision a config version came from."""
    return f" (etcd revision {process['revision']})" if process.get("revision") else ""


def format_table(live: dict[str, Any]) -> str:
    version = live["master"]["version"]
    lines = [f"master {live['master']['pid']}: config version {version}{_etcd(live['master'])}"]
    for w in live["workers"]:
        note = "" if w.get("responding", True) else " (not responding)"
        if w["version"] != version:
            note += f" (still on version {w['version']}: these routes are not live there yet)"
        lines.append(f"worker {w['index']} pid {w['pid']}: version {w['version']}{_etcd(w)}{note}")
    rows = [("ID", "URIS", "METHODS", "HOSTS", "UPSTREAM", "PLUGINS", "STATUS")]
    for r in live["routes"]:
        uris = r.get("uris") or ([r["uri"]] if r.get("uri") else [])
        hosts = r.get("hosts") or ([r["host"]] if r.get("host") else [])
        rows.append((str(r["id"]), _column(uris), _column(r.get("methods")), _column(hosts),
                     _describe_upstream(r), ",".join(r.get("plugins") or {}) or "-",
                     "enabled" if r.get("status", 1) == 1 else "disabled"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append(f"routes ({len(live['routes'])}) of config version {version}:")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def show_routes(config_path: str | None, as_json: bool) -> int:
    try:
        live = live_routes(config_path)
    except (NotRunning, AdminUnreachable) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(live, indent=2) + "\n" if as_json else format_table(live))
    return 0
