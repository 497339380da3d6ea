"""The admin listener: a small HTTP/1.1 server on the master's event loop, guarded by the admin
key and the ``allow_admin`` networks. It serves ``/metrics`` now and is where the Admin API's
resources are added (``gateway.admin.server.AdminServer.router``)."""
from gateway.admin.server import AdminServer

__all__ = ["AdminServer"]
