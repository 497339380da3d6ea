"""The proxy runtime: a configuration compiled into the objects the data plane reads per request
(router, route entries with their plugin chains, upstream groups). The connection protocol itself
lives in ``pyext/_proto.pyx`` (exposed as ``gateway._proto``)."""
