"""The exception hierarchy of ruvector-lab.

Every error the library raises on purpose is a :class:`RuvectorLabError`. The subclasses that describe bad
input also derive from :class:`ValueError` (or :class:`KeyError`, :class:`TypeError`) so that code written
against the standard exceptions keeps working.
"""

from __future__ import annotations


class RuvectorLabError(Exception):
    """Base class of every error raised by ruvector_lab."""


class InvalidParameterError(RuvectorLabError, ValueError):
    """A parameter is out of range or of the wrong kind (k <= 0, unknown metric, bad config field)."""


class DimensionMismatchError(RuvectorLabError, ValueError):
    """A vector or matrix does not have the number of dimensions the index or operation expects."""


class InvalidVectorError(RuvectorLabError, ValueError):
    """A vector holds NaN or inf, is not numeric, is ragged, or is zero where a direction is needed."""


class InvalidIdError(RuvectorLabError, ValueError):
    """An id is not a non-empty string, or a batch of ids does not match its vectors."""


class DuplicateIdError(InvalidIdError):
    """The same id appears more than once in one batch."""


class UnknownIdError(RuvectorLabError, KeyError):
    """An id that the index does not hold was asked for."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown id"


class EmptyIndexError(RuvectorLabError):
    """A search was asked of an index that holds no live vectors."""


class IndexClosedError(RuvectorLabError):
    """An index was used after close()."""


class BackendUnavailableError(RuvectorLabError):
    """A backend was asked for by name but cannot be used here; the message says why and what is available."""


class BackendError(RuvectorLabError):
    """A backend library failed while carrying out a valid request (its message is kept)."""


class CorruptIndexError(RuvectorLabError):
    """A serialized blob is truncated, tampered with, of the wrong kind or of a newer format version."""


class NotARegularFileError(RuvectorLabError, OSError):
    """A path names a FIFO, device, directory or socket where the library reads or replaces a regular file.

    It is an :class:`OSError` too, so code that handles file errors around ``load``/``save`` keeps working.
    """


class PoolError(RuvectorLabError, ValueError):
    """An array released to an ArrayPool was not one it can take back (wrong kind, or released twice)."""


class QuantizationError(RuvectorLabError, ValueError):
    """Codes or a codec were used wrongly: codes of the wrong length, dtype or kind, a PQ ``m`` that does not
    divide the dimension, or a codec kind asked to serve a metric it cannot (binary codes keep only signs)."""


class NotTrainedError(RuvectorLabError, RuntimeError):
    """A codec that needs training (product quantization) was used to encode, decode or score before train()."""


class NoTrainingDataError(InvalidParameterError):
    """A learner was given nothing to learn from (no trajectories, or only empty ones)."""


class ModelError(RuvectorLabError, ValueError):
    """An embedding model or precision that ruvector-lab does not know, or model files that cannot be used."""


class CacheError(RuvectorLabError):
    """The model cache cannot be used: its folder cannot be written, or filling an entry failed."""


class InvalidTextError(RuvectorLabError, TypeError):
    """A text given to an embedder is not a str (None, bytes, a number, ...), or is a str that cannot be encoded
    as UTF-8 (a lone surrogate such as ``"\\ud800"``)."""


class EmbedderClosedError(RuvectorLabError):
    """An Embedder was used after close()."""


class DatasetError(RuvectorLabError):
    """A benchmark dataset cannot be made or read: a missing package or file (the message says what to install or
    which HDF5 file to pass), or an HDF5 file that lacks the ann-benchmarks layout."""


class ResultSchemaError(RuvectorLabError, ValueError):
    """A result file holds an unknown or missing schema tag, or a record that does not match its schema
    (:mod:`ruvector_lab.bench.schemas`); the message names the file and the tag."""

    def __init__(self, message: str, path: str | None = None, tag: str | None = None) -> None:
        super().__init__(message)
        #: the file the record came from (None for a record that was never a file)
        self.path = path
        #: the schema tag the record carries (None when it has none)
        self.tag = tag
