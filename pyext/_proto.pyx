# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The data plane's connection protocol: client connections, pooled upstream connections and the
exchange (one proxied request) between them.

Everything on the per-request path is here or in Rust (called through the C ABI in
gateway_ffi.h): bytes arrive in ``ClientConnection.data_received``, the head is parsed in one Rust
call, routed, rewritten with memcpy from the parsed spans and written to a pooled upstream
connection; the response head is parsed the same way and bodies stream both ways with
back-pressure. Python objects are only built when a plugin asks for them.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.string cimport memcpy, memchr, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME
from posix.types cimport time_t

import asyncio
import base64
from urllib.parse import parse_qs
import errno
import json
import os
from email.utils import formatdate
import logging
import math
import socket
import ssl
import sys

log = logging.getLogger("gateway.proxy")

include "includes/abi_check.pyx"
include "includes/consts.pxi"
include "includes/helpers.pyx"
include "includes/nghttp2_info.pyx"
include "http/head_buffer.pyx"
include "http/local_response.pyx"
include "runtime/health.pyx"
include "runtime/balancers.pyx"
include "runtime/upstream_group.pyx"
include "runtime/runtime.pyx"
include "connections/pool.pyx"
include "connections/server.pyx"
include "connections/upstream_tls.pyx"
include "connections/upstream_connection.pyx"
include "connections/h2_common.pyx"
include "connections/h2_upstream.pyx"
include "connections/grpc_call.pyx"
include "connections/tls_session.pyx"
include "connections/try_log.pyx"
include "connections/context.pyx"
include "connections/phases.pyx"
include "connections/exchange.pyx"
include "connections/client_connection.pyx"
include "connections/h2_stream.pyx"
include "connections/h2_session.pyx"
include "connections/grpc_h2.pyx"
include "connections/tls_transport.pyx"
include "plugins/native_hook.pyx"
include "plugins/prometheus_hook.pyx"
include "plugins/limit_hooks.pyx"
include "plugins/limit_conn_hooks.pyx"
include "plugins/key_auth_hook.pyx"
include "plugins/request_id_hook.pyx"
