"""Which C memory allocator the server process runs on (`Settings.memory_allocator`).

Torch's CPU tensors come from the C allocator, and a forward pass allocates and frees its activations every
time: blocks of tens of megabytes at batch 8 for ResNeSt-101. glibc's malloc serves blocks that large with
fresh ``mmap`` s and gives them back on ``free``, so each forward pass faults its activations in again and
the kernel zeroes every page: page faults by the hundred thousand a second and a wandering throughput,
where jemalloc, configured as below, keeps the pages (``python -m bench allocator``; the numbers are in
docs/performance.md, "Memory allocator").

jemalloc must be the process's allocator from its first ``malloc``, which only ``LD_PRELOAD`` achieves
for an unmodified Python. So ``predictors serve`` starts itself again (``execve``: the same process id,
before any model or torch is loaded) with jemalloc preloaded when the setting asks for it and it is not
loaded yet. A ``MALLOC_CONF`` of the user's own wins over ours.
"""

from __future__ import annotations

import ctypes.util
import sys
from collections.abc import Mapping
from pathlib import Path

from predictors.settings import MemoryAllocator

#: jemalloc's options (its TUNING.md, 5.3.0), chosen for a forward pass's large, short-lived blocks:
#: - oversize_threshold:0 -- no separate arena for blocks over 8 MiB: that arena hands its memory back at
#:   once (decay 0), which under jemalloc's defaults faulted 360 000 pages a second, more than glibc;
#: - dirty_decay_ms / muzzy_decay_ms 30 s -- freed pages are kept for reuse while the server is busy, and
#:   returned to the system after a quiet half minute (an idle pod shrinks);
#: - background_thread:true -- that returning happens on jemalloc's own thread, also when nothing allocates.
JEMALLOC_CONF = "background_thread:true,oversize_threshold:0,dirty_decay_ms:30000,muzzy_decay_ms:30000"
JEMALLOC_LIBRARY = "jemalloc"


class AllocatorUnavailable(RuntimeError):
    """`memory_allocator` is jemalloc and jemalloc cannot be loaded here."""


def find_jemalloc() -> str | None:
    """The shared library's name as the dynamic loader knows it (``libjemalloc.so.2``), or None."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.util.find_library(JEMALLOC_LIBRARY)


OWN_MAPS = Path("/proc/self/maps")


def jemalloc_loaded(maps: Path = OWN_MAPS) -> bool:
    """Whether the process of `maps` (default: this one) has jemalloc mapped (preloaded, or linked by the
    interpreter itself)."""
    try:
        return "libjemalloc" in maps.read_text()
    except OSError:
        return False


def in_use(maps: Path = OWN_MAPS) -> str:
    """``jemalloc`` or ``system``: for the start-up log, and the benchmarks' record of their servers."""
    return "jemalloc" if jemalloc_loaded(maps) else "system"


def relaunch_environment(choice: MemoryAllocator, environ: Mapping[str, str], library: str | None,
                         loaded: bool) -> dict[str, str] | None:
    """The environment to start the server again with, so that it runs on jemalloc; None: run as it is.

    `library`: `find_jemalloc()`; `loaded`: `jemalloc_loaded()`. Raises `AllocatorUnavailable` when
    jemalloc is asked for and cannot be had, also when ``LD_PRELOAD`` names it already and it is still not
    loaded (a second start would fail the same way)."""
    if choice == "system" or loaded:
        return None
    preload = environ.get("LD_PRELOAD", "")
    if library is None or library in preload.split():
        if choice == "auto":
            return None
        reason = ("it is not installed (Debian/Ubuntu: apt-get install libjemalloc2)" if library is None
                  else f"LD_PRELOAD names {library} and it is still not loaded")
        raise AllocatorUnavailable(f"memory_allocator is jemalloc but {reason}; choose auto or system")
    return {**environ, "LD_PRELOAD": f"{preload} {library}".strip(),
            "MALLOC_CONF": environ.get("MALLOC_CONF", JEMALLOC_CONF)}
