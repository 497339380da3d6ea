"""The Admin API: APISIX v3's resource paths (``/apisix/admin/routes/{id}``, ...) over JSON, on
the admin listener. Reads and writes go through a :class:`ConfigStore` (the YAML file today,
etcd later); every write is validated by the config checker that validates the file."""
from gateway.admin.api.handlers import AdminApi
from gateway.admin.api.store import ConfigStore, Resource, StoreError

__all__ = ["AdminApi", "ConfigStore", "Resource", "StoreError"]
