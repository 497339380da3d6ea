cdef class NativeHook:
    cdef readonly object plugin          # the Python plugin this hook runs for
    cdef readonly str phase
    cdef object method                   # the plugin's Python method for the phase: the fallback

    cdef object run(self, Exchange ex)
