"""Upstream groups: compiling them (balancers, health checks and resolution belong here too)."""
