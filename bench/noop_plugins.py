"""Five no-op plugins for the "plugin overhead" scenario: each runs its ``access`` phase and
returns None (the request goes on). Referenced from a route by import path, e.g.
``"bench.noop_plugins:Noop1": {}``; the gateway needs the repository root on PYTHONPATH."""
from __future__ import annotations

from gateway.plugins import Plugin


class Noop1(Plugin):
    name = "bench-noop-1"
    priority = 1005

    def access(self, ctx):
        return None


class Noop2(Plugin):
    name = "bench-noop-2"
    priority = 1004

    def access(self, ctx):
        return None


class Noop3(Plugin):
    name = "bench-noop-3"
    priority = 1003

    def access(self, ctx):
        return None


class Noop4(Plugin):
    name = "bench-noop-4"
    priority = 1002

    def access(self, ctx):
        return None


class Noop5(Plugin):
    name = "bench-noop-5"
    priority = 1001

    def access(self, ctx):
        return None
