"""What a measurement ran on: library versions, CPU model, cores, thread pools, memory; and peak RSS."""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import sys
from importlib import metadata
from typing import Any

#: distributions every measurement depends on whatever the backend; the backends' own come from their records
_COMMON_LIBRARIES = ("ruvector-lab", "numpy", "onnxruntime", "h5py", "threadpoolctl", "dvc")


def _libraries() -> tuple[str, ...]:
    from ..backends import distributions

    return tuple(dict.fromkeys(_COMMON_LIBRARIES + distributions()))


#: distributions whose versions every result records (absent ones are recorded as None)
LIBRARIES = _libraries()


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each distribution, None when it is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity set), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def current_rss_bytes() -> int:
    """Resident set size now, in bytes (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def host() -> dict[str, Any]:
    """This machine: its name and a fingerprint of what its timings depend on (name, CPU model, cores, memory,
    OS), so the report can keep two hosts' timings apart."""
    try:
        mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem_total = None
    name = platform.node() or "unknown"
    parts = [name, cpu_model(), str(os.cpu_count()), str(mem_total), platform.system(), platform.release()]
    return {"name": name, "fingerprint": hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]}


def facade_hot_path() -> bool:
    """True when the facade's C hot path (``ruvector_lab._hotpath``) is built and in use: single-query latencies
    through ``HnswIndex.search`` are a few microseconds higher without it, so every record says which ran."""
    from ..fastpath import hotpath

    return hotpath is not None


def environment() -> dict[str, Any]:
    """The record stored in every result: versions, CPU, cores, memory, Python and OS."""
    try:
        mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem_total = None
    return {
        "libraries": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores_total": os.cpu_count(),
        "cores_usable": usable_cores(),
        "memory_bytes": mem_total,
        "host": host(),
        "facade_hot_path": facade_hot_path(),
    }
