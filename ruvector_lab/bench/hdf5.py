"""The ann-benchmarks HDF5 layout: datasets ``train``, ``test``, ``neighbors``, ``distances`` and the attribute
``distance`` ('angular' or 'euclidean'), read and written here for every dataset the project makes or is given.

ann-benchmarks names cosine distance 'angular' (its stored distances are ``1 - cos``) and L2 'euclidean'; the
library's metric names map to and from those. Extra attributes (source, seed, license notice) ride along.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

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

    def describe(self) -> dict[str, Any]:
        """Name, sizes and metric as plain values (for result JSON)."""
        return {"name": self.name, "n_train": len(self.train), "n_test": len(self.test),
                "dimensions": self.dimensions, "metric": self.metric,
                "gt_k": int(self.neighbors.shape[1]) if self.neighbors is not None else 0}


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
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()
                 if k not in {"distance", "point_type", "dimension", "name"}}
        stored_name = f.attrs.get("name", path.stem)
    if require_groundtruth and (neighbors is None or distances is None):
        raise DatasetError(f"{path} has no ground truth (neighbors, distances); run the groundtruth stage")
    return Dataset(name or str(stored_name), train, test, FROM_ANN[raw_metric], neighbors, distances, attrs)
