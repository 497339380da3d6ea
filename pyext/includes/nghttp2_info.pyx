# The nghttp2 linked into this object (vendored by libnghttp2-sys): reported by `gateway version`
# style diagnostics and checked by the tests, so a build that lost the library fails at import.
NGHTTP2_VERSION = (<bytes>nghttp2_version(0).version_str).decode("ascii")
