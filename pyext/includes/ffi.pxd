cdef extern from "gateway_ffi.h":
    enum:
        GW_MAX_HEADERS
        GW_HF_HOP_BY_HOP
        GW_HF_HOST
        GW_HF_CONTENT_LENGTH
        GW_HF_TRANSFER_ENCODING
        GW_HF_CONNECTION
        GW_HF_EXPECT
        GW_HF_X_FORWARDED_FOR
        GW_HF_X_FORWARDED_PROTO
        GW_HF_X_FORWARDED_HOST
        GW_HF_X_REAL_IP
        GW_HF_UPGRADE
        GW_HF_DATE
        GW_BODY_NONE
        GW_BODY_LENGTH
        GW_BODY_CHUNKED
        GW_BODY_UNTIL_CLOSE
        GW_METHOD_OTHER
        GW_METHOD_GET
        GW_METHOD_HEAD
        GW_METHOD_POST
        GW_METHOD_PUT
        GW_METHOD_DELETE
        GW_METHOD_OPTIONS
        GW_METHOD_PATCH
        GW_METHOD_CONNECT
        GW_METHOD_TRACE

    ctypedef struct gw_span:
        uint32_t off
        uint32_t len

    ctypedef struct gw_header:
        gw_span name
        gw_span value
        uint32_t flags

    ctypedef struct gw_limits:
        uint32_t max_request_line
        uint32_t max_head_size
        uint32_t max_headers

    ctypedef struct gw_request_head:
        uint32_t head_len
        gw_span method
        uint8_t method_id
        uint8_t version_minor
        uint8_t body_kind
        uint8_t keep_alive
        uint8_t expect_continue
        uint8_t upgrade
        uint8_t has_host
        uint8_t query_escape
        uint64_t content_length
        gw_span target
        gw_span path
        gw_span query
        gw_span host
        uint32_t n_headers
        gw_header headers[GW_MAX_HEADERS]

    ctypedef struct gw_response_head:
        uint32_t head_len
        uint16_t status
        uint8_t version_minor
        uint8_t body_kind
        uint8_t keep_alive
        uint64_t content_length
        gw_span reason
        uint32_t n_headers
        gw_header headers[GW_MAX_HEADERS]

    ctypedef struct gw_chunked:
        pass

    int32_t gw_parse_request(const uint8_t *buf, size_t len, const gw_limits *limits,
                             gw_request_head *out, const char **reason) nogil
    int32_t gw_request_from_fields(const uint8_t *buf, size_t len, const gw_limits *limits,
                                   gw_request_head *out, const char **reason) nogil
    int32_t gw_parse_response(const uint8_t *buf, size_t len, int32_t request_was_head,
                              const gw_limits *limits, gw_response_head *out,
                              const char **reason) nogil
    gw_chunked *gw_chunked_new() nogil
    void gw_chunked_free(gw_chunked *scanner) nogil
    void gw_chunked_reset(gw_chunked *scanner) nogil
    int32_t gw_chunked_feed(gw_chunked *scanner, const uint8_t *buf, size_t len,
                            size_t *consumed, uint8_t *done) nogil
    uint64_t gw_chunked_body_bytes(const gw_chunked *scanner) nogil
    int32_t gw_chunked_decode(gw_chunked *scanner, const uint8_t *buf, size_t len, uint8_t *out,
                              size_t *consumed, size_t *out_len, uint8_t *done) nogil
    void gw_abi_sizes(size_t *request_head, size_t *response_head) nogil
    size_t gw_escape_query(const uint8_t *query, size_t len, uint8_t *out) nogil

    ctypedef struct gw_params:
        pass
    gw_params *gw_params_new() nogil
    void gw_params_free(gw_params *params) nogil
    int64_t gw_router_find(const void *router, const uint8_t *method, size_t method_len,
                           const uint8_t *host, size_t host_len, const uint8_t *path,
                           size_t path_len, gw_params *params) nogil
    const uint8_t *gw_params_path(const gw_params *params, size_t *len, uint8_t *changed) nogil
    uint32_t gw_params_count(const gw_params *params) nogil
    int32_t gw_params_item(const gw_params *params, uint32_t index, const uint8_t **name,
                           size_t *name_len, const uint8_t **value, size_t *value_len) nogil

    int32_t gw_limiter_count(const void *limiter, const uint8_t *key, size_t key_len,
                             int64_t sync_tag, uint64_t limit, uint64_t window_ns,
                             uint64_t cost, uint8_t sliding, uint64_t *remaining,
                             uint64_t *reset_ns) nogil
    int32_t gw_limiter_acquire(const void *limiter, const uint8_t *key, size_t key_len,
                               int64_t sync_tag, uint64_t counted_window_ns, double rate,
                               double burst, double cost, uint64_t *delay_ns) nogil
    int32_t gw_limiter_gauge_acquire(const void *limiter, const uint8_t *key, size_t key_len,
                                     uint64_t max, uint64_t *count, int64_t *slot,
                                     uint64_t *key_hash) nogil
    int32_t gw_limiter_gauge_release(const void *limiter, uint64_t key_hash, int64_t slot) nogil
    void gw_metrics_record(const void *store, int64_t series, int64_t status,
                           double request_seconds, double upstream_seconds, uint64_t bytes_in,
                           uint64_t bytes_out) nogil
    int32_t gw_health_report(const void *table, int64_t slot, uint8_t outcome, uint16_t status,
                             uint32_t thresholds) nogil
