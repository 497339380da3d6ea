cdef class KeyAuthAccess(NativeHook):
    """``key-auth`` when the key comes in a header and stays there (no ``bearer_token``, no
    ``hide_credentials``): the header is found by comparing names in the parsed head (no
    header dict is built), the consumer by one dict lookup, and the consumer's upstream
    headers are bytes made once per consumer. Everything else (a key in the query, a missing
    or unknown key and its 401, the anonymous consumer) is the plugin's Python method."""

    def bind_index(self, header, dict by_value):
        """A route's (or global rule's) instance: read ``header`` and look keys up in
        ``by_value``. Not called for a consumer's credential or for configurations the native
        path does not cover."""
        self.header = header.lower().encode("latin-1")
        self.by_value = by_value
        self.upstream_names = {}

    cdef object run(self, Exchange ex):
        cdef object key
        cdef object entry
        cdef tuple names
        if self.by_value is None:
            return self.method(ex)
        key = ex.header_value(self.header)
        if key is None:
            return self.method(ex)
        entry = self.by_value.get(key)
        if entry is None:
            return self.method(ex)
        names = self.upstream_names.get(entry)
        if names is None:
            custom_id = entry.labels.get("custom_id")
            names = (entry.username.encode("latin-1"),
                     custom_id.encode() if custom_id is not None else None)
            self.upstream_names[entry] = names
        ex.attach(entry)
        # Set (not added): a client cannot pose as a consumer by sending these itself.
        ex.set_upstream_header_bytes(b"X-Consumer-Username", b"x-consumer-username", names[0])
        if names[1] is not None:
            ex.set_upstream_header_bytes(b"X-Consumer-Custom-Id", b"x-consumer-custom-id",
                                         names[1])
        else:
            ex.remove_upstream_header_bytes(b"x-consumer-custom-id")
        return None
