"""Moving configs in from other gateways: ``gateway import apisix``."""
