"""A high-performance API gateway whose plugins are plain Python running in-process."""
__version__ = "0.1.0"

try:
    # The Cython modules live inside the _native shared object and are registered in
    # sys.modules when it loads; importing it here makes `import gateway._proto` work anywhere.
    from gateway import _native  # noqa: F401
except ImportError:  # not built yet: the pure-Python parts (config) still import
    pass
