"""Process-level settings that make CPU inference fast.

EXTD's activations are large (a 1024x768 image makes 50 MB maps at stride
4). glibc serves such blocks with ``mmap`` and unmaps them on free, so every
forward pass page-faults its working set again: on the CI machine that was
60 % of the run time. Keeping freed memory in the heap removes it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**30


def tune_allocator(enabled: bool = True) -> bool:
    """Serve large blocks from the heap and keep up to 1 GiB of freed memory (glibc only).

    Affects the whole process; entry points (CLI, service, benchmarks) call
    it once, with :attr:`RuntimeOptions.tune_allocator
    <model.options.RuntimeOptions.tune_allocator>` (``EXTD_TUNE_ALLOCATOR=0`` turns it
    off; the benchmarks' "plain" baseline does). Returns whether the allocator was tuned.
    """
    if not enabled:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc mallopt here; allocator left as is")
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


def trim_heap() -> None:
    """Return the heap's free memory to the system (glibc; a no-op elsewhere).

    The tuned allocator keeps up to 1 GiB of freed memory for the next forward
    pass; after an unusually large one, that memory is better given back.
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc malloc_trim here")
