"""How many measuring tasks ran on this host at the same time as this one.

Two timing tasks on one host share its caches, memory bandwidth and turbo budget, so a figure measured beside
another is not the figure measured alone. Every measuring task (local or on a Dask worker) holds a
:func:`measuring_slot`: a small file in a host-wide folder that records its process, start and end. When the task
ends, the files of every task whose interval overlapped its own are read, and the task records the most measuring
tasks that ran at once during its interval (itself included) and the total that overlapped it. A process that died
without closing its file counts until its pid is gone; files older than a day are pruned.

The folder is per user under the system temp folder (``RUVECTOR_LAB_HOSTLOAD_DIR`` overrides it): every process of
this user on this host, whatever executor started it, sees the same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..container import write_atomic

ENV_VAR = "RUVECTOR_LAB_HOSTLOAD_DIR"
#: slot files older than this are removed by the next task that looks
MAX_AGE_S = 24 * 3600


def slot_dir() -> Path:
    """The host-wide folder of slot files (``$RUVECTOR_LAB_HOSTLOAD_DIR``, else one per user in the temp folder)."""
    env = os.environ.get(ENV_VAR)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(env) if env else Path(tempfile.gettempdir()) / f"ruvector-lab-measuring-{uid}"


@dataclass
class HostLoad:
    """What a measuring slot saw: ``max_concurrent`` measuring tasks at once on this host during the task (itself
    included; 1 = alone) and ``overlapping`` other tasks whose intervals overlapped it."""

    max_concurrent: int = 1
    overlapping: int = 0
    seconds: float = 0.0
    others: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a result record (``host_load``)."""
        return {"max_concurrent": self.max_concurrent, "overlapping": self.overlapping,
                "seconds": round(self.seconds, 3), "others": self.others[:20]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _write(path: Path, record: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(record).encode())


def _intervals(folder: Path, mine: str, now: float) -> list[tuple[str, float, float]]:
    """(name, start, end) of every other slot; an open slot of a live process ends now, of a dead one is dropped."""
    out = []
    for path in folder.glob("*.json"):
        if path.stem == mine:
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            start, end, pid = float(rec["start"]), rec.get("end"), int(rec["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
        if end is None:
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            end = now
        elif now - float(end) > MAX_AGE_S:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        out.append((str(rec.get("task", path.stem)), start, float(end)))
    return out


def overlap_figures(start: float, end: float, others: list[tuple[str, float, float]]) -> HostLoad:
    """The most intervals open at once within [start, end] (this task counted) and the names overlapping it."""
    clipped = [(name, max(s, start), min(e, end)) for name, s, e in others if s < end and e > start]
    events = sorted([(s, 1) for _, s, _ in clipped] + [(e, -1) for _, _, e in clipped], key=lambda ev: (ev[0], ev[1]))
    peak = running = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return HostLoad(max_concurrent=1 + peak, overlapping=len(clipped), seconds=end - start,
                    others=sorted(name for name, _, _ in clipped))


@contextlib.contextmanager
def measuring_slot(task: str = "") -> Iterator[HostLoad]:
    """Hold a measuring slot on this host for the ``with`` block; the yielded :class:`HostLoad` is filled in when
    the block ends (also when it raises)."""
    folder = slot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    path = folder / f"{name}.json"
    start = time.time()
    record = {"pid": os.getpid(), "task": task or name, "start": start, "end": None}
    _write(path, record)
    load = HostLoad()
    try:
        yield load
    finally:
        end = time.time()
        record["end"] = end
        _write(path, record)  # closed, so tasks that overlapped this one still see it
        seen = overlap_figures(start, end, _intervals(folder, name, end))
        load.max_concurrent, load.overlapping = seen.max_concurrent, seen.overlapping
        load.seconds, load.others = seen.seconds, seen.others
