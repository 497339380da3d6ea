"""Keeps the cyclic garbage collector's full passes short with a big config in memory.

A config of 10k routes is hundreds of thousands of objects (the config, the Admin API's parsed
document, the compiled routes); every full pass of the collector walks all of them: 0.1-0.6 s
on a busy machine, in the master or a worker, whatever the write that happens to trigger it
(the outliers of bench/admin_write.py and etcd_write.py). After the big allocations (a start, a
reload, a whole compile, a document parsed) :func:`settle` collects once and moves every live
object to the permanent generation, which later passes skip: they walk only what was allocated
since (a few writes' worth).
"""
from __future__ import annotations

import gc


def settle() -> None:
    """Collects everything (what was frozen before too: a replaced config's cycles are freed)
    and freezes what is left. Costs one full pass: only after work that costs more."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
