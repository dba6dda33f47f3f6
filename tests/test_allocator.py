"""segformer.allocator: with its settings a freed block of a hundred MB and more stays mapped for the next forward;
without them glibc hands it back to the system at once. Each case runs in a fresh interpreter, since the settings
are the whole process's."""

import json
import subprocess
import sys

import pytest

from segformer.allocator import MMAP_THRESHOLD

#: Allocate a block under the raised mmap threshold (touched, so resident), free it, and report the resident size
#: it left behind.
PROBE = """
import json, os, sys
import numpy as np
from segformer.allocator import keep_freed_memory
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
before = resident()
block = np.ones(int(sys.argv[2]), dtype=np.uint8)
del block
print(json.dumps({"applied": applied, "kept": resident() - before}))
"""


def probe(mode: str, size: int) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(size)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; elsewhere a no-op")
def test_a_freed_block_stays_resident_only_with_the_settings() -> None:
    size = MMAP_THRESHOLD * 3 // 4  # 192 MB: over glibc's own mmap threshold, under the raised one
    kept = probe("keep", size)
    default = probe("default", size)
    assert kept["applied"] and not default["applied"]
    assert kept["kept"] > 0.9 * size, kept  # still mapped: the next forward's allocation faults nothing in
    assert default["kept"] < 0.1 * size, default  # unmapped when freed
