# A growable C buffer, reused for the life of a session (frames one flush sends, a header
# block being read, lowercased response field names): grown by h2_buf_reserve, freed by
# h2_buf_free in the owner's __dealloc__.
ctypedef struct h2_buf:
    uint8_t *data
    size_t len
    size_t cap
