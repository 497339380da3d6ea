/* C view of the Rust structs and functions in src/ffi.rs and rust/http (repr(C)).
 * The layouts must match rust/http/src; _proto checks the sizes against gw_abi_sizes() at import. */
#ifndef GATEWAY_FFI_H
#define GATEWAY_FFI_H
#include <stdint.h>
#include <stddef.h>

#define GW_MAX_HEADERS 128

#define GW_HF_HOP_BY_HOP 1u
#define GW_HF_HOST 2u
#define GW_HF_CONTENT_LENGTH 4u
#define GW_HF_TRANSFER_ENCODING 8u
#define GW_HF_CONNECTION 16u
#define GW_HF_EXPECT 32u
#define GW_HF_X_FORWARDED_FOR 64u
#define GW_HF_X_FORWARDED_PROTO 128u
#define GW_HF_X_FORWARDED_HOST 256u
#define GW_HF_X_REAL_IP 512u
#define GW_HF_UPGRADE 1024u
#define GW_HF_DATE 2048u

#define GW_BODY_NONE 0
#define GW_BODY_LENGTH 1
#define GW_BODY_CHUNKED 2
#define GW_BODY_UNTIL_CLOSE 3

#define GW_METHOD_OTHER 0
#define GW_METHOD_GET 1
#define GW_METHOD_HEAD 2
#define GW_METHOD_POST 3
#define GW_METHOD_PUT 4
#define GW_METHOD_DELETE 5
#define GW_METHOD_OPTIONS 6
#define GW_METHOD_PATCH 7
#define GW_METHOD_CONNECT 8
#define GW_METHOD_TRACE 9

typedef struct { uint32_t off; uint32_t len; } gw_span;
typedef struct { gw_span name; gw_span value; uint32_t flags; } gw_header;
typedef struct { uint32_t max_request_line; uint32_t max_head_size; uint32_t max_headers; } gw_limits;

typedef struct {
    uint32_t head_len;
    gw_span method;
    uint8_t method_id;
    uint8_t version_minor;
    uint8_t body_kind;
    uint8_t keep_alive;
    uint8_t expect_continue;
    uint8_t upgrade;
    uint8_t has_host;
    uint8_t query_escape;
    uint64_t content_length;
    gw_span target;
    gw_span path;
    gw_span query;
    gw_span host;
    uint32_t n_headers;
    gw_header headers[GW_MAX_HEADERS];
} gw_request_head;

typedef struct {
    uint32_t head_len;
    uint16_t status;
    uint8_t version_minor;
    uint8_t body_kind;
    uint8_t keep_alive;
    uint64_t content_length;
    gw_span reason;
    uint32_t n_headers;
    gw_header headers[GW_MAX_HEADERS];
} gw_response_head;

typedef struct gw_chunked gw_chunked;

int32_t gw_parse_request(const uint8_t *buf, size_t len, const gw_limits *limits,
                         gw_request_head *out, const char **reason);
int32_t gw_request_from_fields(const uint8_t *buf, size_t len, const gw_limits *limits,
                               gw_request_head *out, const char **reason);
int32_t gw_parse_response(const uint8_t *buf, size_t len, int32_t request_was_head,
                          const gw_limits *limits, gw_response_head *out, const char **reason);
gw_chunked *gw_chunked_new(void);
void gw_chunked_free(gw_chunked *scanner);
void gw_chunked_reset(gw_chunked *scanner);
int32_t gw_chunked_feed(gw_chunked *scanner, const uint8_t *buf, size_t len, size_t *consumed,
                        uint8_t *done);
uint64_t gw_chunked_body_bytes(const gw_chunked *scanner);
int32_t gw_chunked_decode(gw_chunked *scanner, const uint8_t *buf, size_t len, uint8_t *out,
                          size_t *consumed, size_t *out_len, uint8_t *done);
void gw_abi_sizes(size_t *request_head, size_t *response_head);
size_t gw_escape_query(const uint8_t *query, size_t len, uint8_t *out);

typedef struct gw_params gw_params;
gw_params *gw_params_new(void);
void gw_params_free(gw_params *params);
int64_t gw_router_find(const void *router, const uint8_t *method, size_t method_len,
                       const uint8_t *host, size_t host_len, const uint8_t *path, size_t path_len,
                       gw_params *params);
const uint8_t *gw_params_path(const gw_params *params, size_t *len, uint8_t *changed);
uint32_t gw_params_count(const gw_params *params);
int32_t gw_params_item(const gw_params *params, uint32_t index, const uint8_t **name,
                       size_t *name_len, const uint8_t **value, size_t *value_len);

/* Shared-memory limits and metrics for the built-in plugins' native hooks. A handle is the
 * `_handle` of a live SharedLimiter / SharedMetrics object, kept referenced by the caller. */
/* sync_tag < 0: a local limit's key; else the synced key of that tag (policy redis). */
int32_t gw_limiter_count(const void *limiter, const uint8_t *key, size_t key_len, int64_t sync_tag,
                         uint64_t limit, uint64_t window_ns, uint64_t cost, uint8_t sliding,
                         uint64_t *remaining, uint64_t *reset_ns);
int32_t gw_limiter_acquire(const void *limiter, const uint8_t *key, size_t key_len,
                           int64_t sync_tag, uint64_t counted_window_ns, double rate,
                           double burst, double cost, uint64_t *delay_ns);
int32_t gw_limiter_gauge_acquire(const void *limiter, const uint8_t *key, size_t key_len,
                                 uint64_t max, uint64_t *count, int64_t *slot,
                                 uint64_t *key_hash);
int32_t gw_limiter_gauge_release(const void *limiter, uint64_t key_hash, int64_t slot);
void gw_metrics_record(const void *store, int64_t series, int64_t status, double request_seconds,
                       double upstream_seconds, uint64_t bytes_in, uint64_t bytes_out);

/* Passive health checks: one outcome of a request to a node (the `_handle` of a live
 * SharedHealth, the node's slot; outcome 0 success, 1 HTTP failure, 2 TCP failure, 3 timeout).
 * Returns 1 went down, 2 came back, 0 no change. */
int32_t gw_health_report(const void *table, int64_t slot, uint8_t outcome, uint16_t status,
                         uint32_t thresholds);

#endif
