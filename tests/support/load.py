"""Real load for restart tests: wrk on keep-alive connections plus wrk sending
``Connection: close`` (a new connection per request, which is what meets a closing accept queue),
and a way to see which processes hold the clients' connections."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WRK = shutil.which("wrk")


@dataclass
class WrkResult:
    requests: int = 0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    output: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def parse(output: str) -> WrkResult:
    result = WrkResult(output=output)
    match = re.search(r"^\s*(\d+) requests in", output, re.M)
    if match is None:
        raise AssertionError(f"wrk printed no result:\n{output}")
    result.requests = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      output)
    counts = [int(g) for g in match.groups()] if match else [0, 0, 0, 0]
    result.socket_errors = dict(zip(("connect", "read", "write", "timeout"), counts))
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result.non_2xx = int(match.group(1)) if match else 0
    return result


class Load:
    """Two wrk runs against ``port`` for ``seconds``: keep-alive and new-connection."""

    def __init__(self, port: int, seconds: int, path: str = "/echo", keep_alive: int = 8,
                 new_connections: int = 32) -> None:
        assert WRK is not None, "wrk is needed (Debian package wrk)"
        url = f"http://127.0.0.1:{port}{path}"
        common = [WRK, "-t1", f"-d{seconds}s", "--timeout", "5s"]
        self.runs = {
            "keep-alive": subprocess.Popen([*common, f"-c{keep_alive}", url],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True),
            "new connections": subprocess.Popen(
                [*common, f"-c{new_connections}", "-H", "Connection: close", url],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        }

    def running(self) -> bool:
        return all(p.poll() is None for p in self.runs.values())

    def results(self, timeout: float = 60.0) -> dict[str, WrkResult]:
        return {name: parse(p.communicate(timeout=timeout)[0]) for name, p in self.runs.items()}

    def stop(self) -> None:
        for p in self.runs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def established_by(pids: list[int], port: int) -> dict[int, int]:
    """How many established connections on local ``port`` each process holds."""
    inodes: set[str] = set()
    port_hex = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(port_hex) and fields[3] == "01":
                inodes.add(fields[9])
    held: dict[int, int] = {}
    for pid in pids:
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    count += 1
        except OSError:
            pass
        held[pid] = count
    return held


def serving_pids(pids: list[int], port: int, connections: int = 24) -> dict[int, int]:
    """Opens ``connections`` keep-alive connections that each get a response, and counts
    which of ``pids`` holds them (the kernel spreads new connections over the workers)."""
    socks = []
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(sock)
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in socks:
            if not sock.recv(65536).startswith(b"HTTP/1.1 200"):
                raise AssertionError("a probe request failed")
        return established_by(pids, port)
    finally:
        for sock in socks:
            sock.close()
