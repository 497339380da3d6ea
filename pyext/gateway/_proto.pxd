"""Declarations of the connection protocol's C-level classes: each class's fields and C methods
live in the .pxd beside its .pyx (uvloop's layout)."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

include "includes/ffi.pxd"
include "includes/nghttp2.pxd"

cdef class HeadBuffer
cdef class Response
cdef class UpstreamNode
cdef class UpstreamGroup
cdef class Balancer
cdef class PassiveChecks
cdef class RoundRobinBalancer
cdef class LeastConnBalancer
cdef class ChashBalancer
cdef class EwmaBalancer
cdef class RouteEntry
cdef class Runtime
cdef class Server
cdef class UpstreamPool
cdef class UpstreamConnection
cdef class H2StreamOwner
cdef class H2UpstreamStream
cdef class H2UpstreamSession
cdef class H2UpstreamPool
cdef class GrpcDownstream
cdef class GrpcCall
cdef class TryLog
cdef class RequestContext
cdef class PhaseRunner
cdef class Exchange
cdef class TlsSession
cdef class ClientConnection
cdef class H2Stream
cdef class H2Connection
cdef class TlsTransport
cdef class NativeHook
cdef class PrometheusLog
cdef class LimitAccess
cdef class LimitCountAccess
cdef class LimitReqAccess
cdef class KeyAuthAccess
cdef class RequestIdRewrite
cdef class ConnLease
cdef class LimitConnAccess
cdef class LimitConnLog

include "connections/states.pxd"
include "http/head_buffer.pxd"
include "http/local_response.pxd"
include "runtime/health.pxd"
include "runtime/upstream_group.pxd"
include "runtime/balancers.pxd"
include "runtime/runtime.pxd"
include "connections/pool.pxd"
include "connections/server.pxd"
include "connections/upstream_connection.pxd"
include "connections/h2_common.pxd"
include "connections/h2_upstream.pxd"
include "connections/grpc_call.pxd"
include "connections/tls_session.pxd"
include "connections/try_log.pxd"
include "connections/context.pxd"
include "connections/phases.pxd"
include "connections/exchange.pxd"
include "connections/client_connection.pxd"
include "connections/h2_session.pxd"
include "connections/tls_transport.pxd"
include "plugins/native_hook.pxd"
include "plugins/prometheus_hook.pxd"
include "plugins/limit_hooks.pxd"
include "plugins/limit_conn_hooks.pxd"
include "plugins/key_auth_hook.pxd"
include "plugins/request_id_hook.pxd"
