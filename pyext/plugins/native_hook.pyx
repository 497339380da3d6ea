cdef class NativeHook:
    """A built-in plugin's phase compiled to C: the exchange calls ``run`` through the vtable,
    with no Python call, no argument tuple and no bound-method object. A plugin offers one per
    phase in ``Plugin.native_hooks``. Its Python method for the phase stays the reference: a
    subclass handles the common configuration natively and hands the rest to that method
    (this base class hands it everything)."""

    def __cinit__(self, plugin, str phase):
        self.plugin = plugin
        self.phase = phase
        self.method = getattr(plugin, phase)

    cdef object run(self, Exchange ex):
        return self.method(ex)

    def __call__(self, Exchange ctx):
        """Hook chains are also run from Python (async phases): the same code, called there."""
        return self.run(ctx)

    def __repr__(self):
        return f"<{type(self).__name__} {self.phase} of {self.plugin!r}>"


cdef inline object call_hook(object hook, Exchange ex):
    """Runs one phase hook: a native one through the vtable, any other as a Python call."""
    if isinstance(hook, NativeHook):
        return (<NativeHook>hook).run(ex)
    return hook(ex)


cdef bytes uint_bytes(uint64_t value):
    """``value`` as decimal ASCII bytes (header values); PyBytes_FromFormat costs ~5x more."""
    cdef char digits[20]
    cdef int i = 20
    while True:
        i -= 1
        digits[i] = <char>(48 + value % 10)
        value //= 10
        if value == 0:
            break
    return PyBytes_FromStringAndSize(digits + i, 20 - i)
