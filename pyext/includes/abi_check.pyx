cdef size_t _abi_req = 0, _abi_resp = 0
gw_abi_sizes(&_abi_req, &_abi_resp)
if _abi_req != sizeof(gw_request_head) or _abi_resp != sizeof(gw_response_head):
    raise ImportError(
        f"gateway._proto: C header out of sync with rust/http "
        f"(request head {sizeof(gw_request_head)} vs {_abi_req}, "
        f"response head {sizeof(gw_response_head)} vs {_abi_resp})")
