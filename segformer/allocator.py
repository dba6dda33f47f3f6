"""The C allocator's settings for inference on the CPU: memory a forward frees stays mapped for the next one.

A forward allocates and frees tensors of a few MB to over a hundred MB (B0 at 384x512: the decoder's upsampled
256-channel maps are 12 MB each; at 1024x2048 they are 134 MB, and stage 1's Mix-FFN hidden map 67 MB). glibc's
malloc serves each allocation over its mmap threshold with a fresh ``mmap`` and gives it back with ``munmap`` when
freed, and returns free memory at the top of its heap to the system beyond its trim threshold, so every forward
faults its working memory in again and the kernel zeroes each page first. On two cores that was a quarter of B0's
forward at 384x512 (about 150 ms against 112 ms with such settings) and at 1024x2048 (3.3 s against 2.5 s once
the mmap threshold is over its largest block), in one process, interleaved with onnxruntime, whose own arena
allocator reuses its memory (``bench/README.md``).

``keep_freed_memory`` raises both thresholds: allocations under 256 MB come from the heap, and the heap keeps up to
1 GB of freed memory mapped. The cost is that resident memory, once grown to what the largest forward so far
needed, stays there unless over 1 GB of it is free. It changes nothing but speed and memory (no result changes),
applies to the whole process, and is a no-op where the C library is not glibc. The app, the command line, training
and the benchmarks call it at start-up. Training's step (forward and backward) gained about a third more images a
second in ``bench_model``; two training runs side by side, one core each, showed no clear change in their epoch
time.
"""

import ctypes
import ctypes.util
import sys

#: mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 1024 * 2**20


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold to MMAP_THRESHOLD and its trim threshold to TRIM_THRESHOLD for this process;
    whether both were set (False off Linux, or where the C library has no ``mallopt``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)  # musl has none
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
