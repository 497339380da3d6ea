"""Observability: access log (metrics and tracing arrive with the plugins)."""
