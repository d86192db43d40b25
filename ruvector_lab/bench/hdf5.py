"""The ann-benchmarks HDF5 layout: datasets ``train``, ``test``, ``neighbors``, ``distances`` and the attribute
``distance`` ('angular' or 'euclidean'), read and written here for every dataset the project makes or is given.

ann-benchmarks names cosine distance 'angular' (its stored distances are ``1 - cos``) and L2 'euclidean'; the
library's metric names map to and from those. Extra attributes (source, seed, license notice) ride along.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

log = logging.getLogger(__name__)

#: library metric -> ann-benchmarks attribute
TO_ANN: dict[str, str] = {"cosine": "angular", "euclidean": "euclidean", "dot_product": "dot"}
#: ann-benchmarks attribute -> library metric
FROM_ANN: dict[str, str] = {"angular": "cosine", "cosine": "cosine", "euclidean": "euclidean", "dot": "dot_product",
                            "ip": "dot_product"}


@dataclass
class Dataset:
    """A benchmark dataset in memory: base vectors, queries, metric and (optionally) exact ground truth."""

    name: str
    train: np.ndarray
    test: np.ndarray
    metric: str
    neighbors: np.ndarray | None = None
    distances: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def dimensions(self) -> int:
        """Width of the vectors."""
        return int(self.train.shape[1])

    def content_hash(self) -> str:
        """sha256 (first 16 hex characters) of what a benchmark measures: the metric and the dtype, shape and bytes
        of train, test, neighbors and distances (an absent array is hashed as absent).

        Arrays are hashed in the dtypes :func:`write_hdf5` stores and :func:`read_hdf5` returns (little-endian
        float32 vectors and distances, int64 ids), so a dataset and its copy read back from disk hash alike. The
        name and ``attrs`` are left out: they do not change a measurement, and attrs such as ``make_seconds`` differ
        between two makings of the same data. Computed on every call (the arrays are mutable, so a memo could go
        stale); 100k x 384 float32 takes a fraction of a second.
        """
        h = hashlib.sha256(f"ruvector-lab dataset v1\nmetric={self.metric}\n".encode())
        for key, dtype in _HASHED:
            value = getattr(self, key)
            if value is None:
                h.update(f"{key}=absent\n".encode())
                continue
            arr = np.ascontiguousarray(value, dtype=dtype)
            h.update(f"{key}={arr.dtype.str}{list(arr.shape)}\n".encode())
            h.update(arr.reshape(-1).view(np.uint8))  # the raw bytes, without a copy
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Name, sizes, metric and content hash as plain values (for result JSON and run fingerprints: the hash
        makes every record depend on the vectors and ground truth it was measured on, not only on their sizes)."""
        return {"name": self.name, "n_train": len(self.train), "n_test": len(self.test),
                "dimensions": self.dimensions, "metric": self.metric,
                "gt_k": int(self.neighbors.shape[1]) if self.neighbors is not None else 0,
                "content_hash": self.content_hash()}


#: the arrays of :meth:`Dataset.content_hash`, in order, with the dtype each is stored in on disk
_HASHED: tuple[tuple[str, str], ...] = (("train", "<f4"), ("test", "<f4"), ("neighbors", "<i8"),
                                        ("distances", "<f4"))


def write_hdf5(path: str | os.PathLike[str], ds: Dataset) -> Path:
    """Write ``ds`` in the ann-benchmarks layout (atomically: a temporary file renamed into place)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["distance"] = TO_ANN[ds.metric]
        f.attrs["point_type"] = "float"
        f.attrs["dimension"] = ds.dimensions
        f.attrs["name"] = ds.name
        for key, value in ds.attrs.items():
            f.attrs[key] = value
        f.create_dataset("train", data=np.asarray(ds.train, dtype=np.float32))
        f.create_dataset("test", data=np.asarray(ds.test, dtype=np.float32))
        if ds.neighbors is not None and ds.distances is not None:
            f.create_dataset("neighbors", data=np.asarray(ds.neighbors, dtype=np.int32))
            f.create_dataset("distances", data=np.asarray(ds.distances, dtype=np.float32))
    os.replace(tmp, path)
    return path


def read_hdf5(path: str | os.PathLike[str], name: str | None = None, require_groundtruth: bool = False) -> Dataset:
    """Read an ann-benchmarks HDF5 file; :class:`DatasetError` names what is missing or unsupported."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no HDF5 file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file: {exc}") from None
    with f:
        missing = [key for key in ("train", "test") if key not in f]
        if missing:
            raise DatasetError(f"{path} lacks the ann-benchmarks dataset(s) {missing}")
        raw_metric = f.attrs.get("distance")
        if isinstance(raw_metric, bytes):
            raw_metric = raw_metric.decode()
        if raw_metric not in FROM_ANN:
            raise DatasetError(
                f"{path} has distance attribute {raw_metric!r}; supported: {', '.join(sorted(FROM_ANN))}"
            )
        train = np.asarray(f["train"], dtype=np.float32)
        test = np.asarray(f["test"], dtype=np.float32)
        if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
            raise DatasetError(f"{path}: train {train.shape} and test {test.shape} must be 2-D of equal width")
        neighbors = np.asarray(f["neighbors"], dtype=np.int64) if "neighbors" in f else None
        distances = np.asarray(f["distances"], dtype=np.float32) if "distances" in f else None
        # ground truth is one row of k ids and k distances per query; any other shape would be misread downstream
        for key, arr in (("neighbors", neighbors), ("distances", distances)):
            if arr is not None and (arr.ndim != 2 or len(arr) != len(test)):
                raise DatasetError(f"{path}: {key} {arr.shape} must be 2-D with one row per query "
                                   f"({len(test)} test rows)")
        if neighbors is not None and distances is not None and neighbors.shape != distances.shape:
            raise DatasetError(f"{path}: neighbors {neighbors.shape} and distances {distances.shape} differ in shape")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()
                 if k not in {"distance", "point_type", "dimension", "name"}}
        stored_name = f.attrs.get("name", path.stem)
    if require_groundtruth and (neighbors is None or distances is None):
        raise DatasetError(f"{path} has no ground truth (neighbors, distances); run the groundtruth stage")
    return Dataset(name or str(stored_name), train, test, FROM_ANN[raw_metric], neighbors, distances, attrs)


def link_hdf5(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Make ``dest`` a symbolic link to the existing file ``source`` (absolute; replaced atomically) and return it.

    The data stage links an external ann-benchmarks file instead of copying it: DVC hashes through the link, so
    when the file's contents change, ``dvc status`` reports the data stage's output (and the groundtruth stage's
    input) as modified, and ``dvc repro`` redoes them; a copy would keep the old contents invisibly. Where links
    cannot be made the file is copied and a warning says that DVC will then not see later changes to it.
    """
    source, dest = Path(os.path.abspath(source)), Path(dest)
    if not source.is_file():
        raise DatasetError(f"no HDF5 file at {source}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # already linked, or the file is the output itself (--hdf5 data/raw/NAME.hdf5), where a link would point at itself
    same = dest.exists() and os.path.samefile(source, dest)
    if same and (dest.is_symlink() or Path(os.path.abspath(dest)) == source):
        return dest
    tmp = dest.with_name(dest.name + ".tmp-link")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(source, tmp)
    except OSError as exc:
        log.warning("cannot link %s to %s (%s); copying it instead: DVC will not see later changes to %s",
                    dest, source, exc, source)
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)
    return dest
