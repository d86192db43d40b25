"""Why a codec loses to a smaller one: the rule, and the measured reasons it names.

The codec sweep (:mod:`ruvector_lab.bench.quant`) measures each codec's recall@10 without re-ranking beside its
bytes per vector. A codec that spends more bytes than another yet recalls less is a finding worth a sentence, and
the sweep's diagnostics say why:

- **the random rotation** (RaBitQ): the same bits with the rotation off (``rabitq-norot``) beside the rotated codec,
  with both mean alignments ``<x̄, y>`` (how close a vector's quantized direction lies to its own);
- **the neighbourhood error**: the codec's reconstruction error against the spread of a query's 100 true
  neighbours about their centroid, and the share of the data's variance that spread is;
- **the neighbourhood order**: how faithfully the codes order a query's 100 true neighbours (Spearman).

:func:`findings` is the one home of that rule; the report's "Why a codec loses to a smaller one" and notebook 04
read it. Every word of a finding's text comes from the records' numbers, never from a dataset's name. Figures a
record does not carry (sweeps from before the diagnostics) are unknown: a cause that needs them is not stated,
and the neighbourhood order says it was not recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import polars as pl

from . import results, tables

#: recall@10 differences at or below this are treated as equal: a codec loses to a smaller one only when it
#: recalls more than this less (and a rotation-off variant is the cause only when it recalls more than this more)
RECALL_MARGIN = 0.01
#: from this fraction of the spread of a query's neighbourhood on, a codec's reconstruction error blurs the
#: neighbours into each other: the neighbourhood-error cause is named from here (when the winner's error is smaller)
ERROR_TO_SPREAD = 0.5
#: a neighbourhood spread below this share of the data's total variance means most of the variance lies between
#: neighbourhoods (clusters): a codec minimising its overall error then spends its bits there
SMALL_SHARE = 0.5
#: the spec word that turns RaBitQ's random rotation off (:data:`ruvector_lab.bench.results.SPEC_WORDS`)
NOROT = next(word for word, (field, value) in results.SPEC_WORDS.items() if (field, value) == ("rotation", "none"))


@dataclass(frozen=True)
class Finding:
    """One codec that loses to a smaller one on a dataset, the sentence saying so, and the figures it uses.

    ``loser`` spends more bytes per vector than ``winner`` (the best-recalling smaller codec) yet recalls less at
    recall@10 without re-ranking. ``rotation`` is what the sweep says of RaBitQ's random rotation: 'cause',
    'not the cause', 'not measured' (``rotation_off`` then names the spec to add), or None when the loser is not
    a randomly rotated RaBitQ codec. ``error_cause`` is True when the loser's neighbourhood error is named as a
    cause. Figures a record does not carry are None."""

    dataset: str
    loser: str
    winner: str
    text: str
    loser_bytes: float
    winner_bytes: float
    loser_recall: float
    winner_recall: float
    loser_order: float | None = None
    winner_order: float | None = None
    loser_error_to_spread: float | None = None
    winner_error_to_spread: float | None = None
    spread_share: float | None = None
    rotation: str | None = None
    rotation_off: str | None = None
    rotation_off_recall: float | None = None
    loser_alignment: float | None = None
    rotation_off_alignment: float | None = None
    error_cause: bool = False


#: the polars type of each annotation a :class:`Finding` field has
_DTYPES: dict[str, Any] = {"str": pl.String, "str | None": pl.String, "float": pl.Float64, "float | None": pl.Float64,
                           "bool": pl.Boolean}
#: :func:`findings_frame`: one column per :class:`Finding` field, in its order
FINDING_COLUMNS: dict[str, Any] = {f.name: _DTYPES[str(f.type)] for f in fields(Finding)}


def _bytes(value: float) -> str:
    return f"{value:.4g}"


def _norot_spec(spec: str) -> str:
    """The rotation-off spec of a RaBitQ codec's spec, its bits part kept: ``rabitq`` -> ``rabitq-norot``,
    ``rabitq-b4`` -> ``rabitq-b4-norot``."""
    bits = results.spec_fields(spec).bits
    return "-".join(["rabitq", *([f"b{bits}"] if bits is not None else []), NOROT])


def _rotation_cause(a: Mapping[str, Any], same: list[dict[str, Any]]) -> dict[str, Any]:
    """What the sweep says of a randomly rotated RaBitQ codec's rotation (see :class:`Finding`): the fields and
    the sentence."""
    off = next((c for c in same if c["kind"] == "rabitq" and c["rotation"] == "none" and c["bits"] == a["bits"]
                and c["recall_at_10"] is not None), None)
    if off is None:
        spec = _norot_spec(a["codec"])
        return {"rotation": "not measured", "rotation_off": spec,
                "sentence": f"Whether the random rotation is the cause was not measured: add `{spec}` (the same "
                            "bits without the rotation) to quantization.codecs."}
    fig = {"rotation_off": off["codec"], "rotation_off_recall": off["recall_at_10"],
           "loser_alignment": a["rabitq_alignment"], "rotation_off_alignment": off["rabitq_alignment"]}
    if off["recall_at_10"] <= a["recall_at_10"] + RECALL_MARGIN:
        return fig | {"rotation": "not the cause",
                      "sentence": f"The random rotation is not the cause: without it, {off['codec']} recalls "
                                  f"{off['recall_at_10']:.3f} ({off['recall_at_10'] - a['recall_at_10']:+.3f})."}
    sentence = (f"The random rotation is the cause: without it, {off['codec']} recalls {off['recall_at_10']:.3f}"
                f" ({off['recall_at_10'] - a['recall_at_10']:+.3f})")
    rotated, unrotated = a["rabitq_alignment"], off["rabitq_alignment"]
    if rotated is None or unrotated is None:
        sentence += "; the mean <x̄, y> was not recorded for both."
    elif rotated < unrotated:
        sentence += (f"; the mean <x̄, y> is {rotated:.3f} rotated against {unrotated:.3f} unrotated: the quantized "
                     "directions lie further from the vectors after the rotation, i.e. the data's axes carry "
                     "structure the rotation spreads.")
    else:
        sentence += (f", although the mean <x̄, y> is no lower rotated ({rotated:.3f}) than unrotated "
                     f"({unrotated:.3f}): the alignment does not show why.")
    return fig | {"rotation": "cause", "sentence": sentence}


def _error_cause(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """The neighbourhood-error sentence when it applies (the loser's error is at least :data:`ERROR_TO_SPREAD`
    of the neighbourhood spread), else None. When the winner errs as much or more overall, the sentence says
    so: its error then falls less on what separates the neighbours (its better order shows it)."""
    ea, eb = a["error_to_spread"], b["error_to_spread"]
    if ea is None or eb is None or ea < ERROR_TO_SPREAD:
        return None
    sentence = (f"Its reconstruction error is {ea:.2f} times the spread of a query's 100 nearest neighbours "
                f"({b['codec']}: {eb:.2f})")
    if eb >= ea:
        sentence += (f"; {b['codec']} errs as much or more overall, so its error falls less on what separates the "
                     "neighbours")
    share = a["spread_share"] if a["spread_share"] is not None else b["spread_share"]
    if share is None:
        return sentence + "."
    if share < SMALL_SHARE:
        return sentence + (f", and that neighbourhood spans only {share:.1%} of the data's variance: a codec that "
                           f"minimises its overall error spends it on the {1 - share:.1%} between neighbourhoods "
                           "(e.g. cluster centres), not on what tells the neighbours apart.")
    return sentence + f"; that neighbourhood spans {share:.1%} of the data's variance."


def _order_sentence(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """The neighbourhood order of the loser against the winner's, in words that follow the numbers."""
    oa, ob = a["neighbourhood_order"], b["neighbourhood_order"]
    if oa is None or ob is None:
        missing = " and ".join(c["codec"] for c in (a, b) if c["neighbourhood_order"] is None)
        return f"The neighbourhood order was not recorded for {missing} (a sweep from before the diagnostic)."
    if oa < ob:
        return (f"Its codes order a query's 100 true neighbours less faithfully than {b['codec']}'s (Spearman "
                f"{oa:.3f} against {ob:.3f}).")
    return (f"Its codes order a query's 100 true neighbours at least as faithfully as {b['codec']}'s (Spearman "
            f"{oa:.3f} against {ob:.3f}), so the order inside the neighbourhood does not explain the loss.")


def _finding(a: dict[str, Any], b: dict[str, Any], same: list[dict[str, Any]]) -> Finding:
    head = (f"On {a['dataset']}, {a['codec']} ({_bytes(a['bytes_per_vector'])} B/vector) recalls "
            f"{a['recall_at_10']:.3f} at recall@10 without re-ranking, {b['recall_at_10'] - a['recall_at_10']:.3f} "
            f"less than the smaller {b['codec']} ({_bytes(b['bytes_per_vector'])} B/vector, "
            f"{b['recall_at_10']:.3f}).")
    parts = [head]
    rotation: dict[str, Any] = {}
    if a["kind"] == "rabitq" and a["rotation"] == "random":
        rotation = _rotation_cause(a, same)
        parts.append(rotation.pop("sentence"))
    error = _error_cause(a, b)
    if error:
        parts.append(error)
    parts.append(_order_sentence(a, b))
    return Finding(
        dataset=a["dataset"], loser=a["codec"], winner=b["codec"], text=" ".join(parts),
        loser_bytes=a["bytes_per_vector"], winner_bytes=b["bytes_per_vector"], loser_recall=a["recall_at_10"],
        winner_recall=b["recall_at_10"], loser_order=a["neighbourhood_order"], winner_order=b["neighbourhood_order"],
        loser_error_to_spread=a["error_to_spread"], winner_error_to_spread=b["error_to_spread"],
        spread_share=a["spread_share"] if a["spread_share"] is not None else b["spread_share"],
        error_cause=error is not None, **rotation)


def frame_findings(codecs: pl.DataFrame) -> list[Finding]:
    """:func:`findings` over a codecs frame (:attr:`ruvector_lab.bench.tables.Tables.codecs`, or
    :func:`ruvector_lab.bench.tables.codec_frame`): per dataset, at factor 1 (no re-ranking), codec A loses to B
    when A takes more bytes per vector and recalls more than :data:`RECALL_MARGIN` less at recall@10; one finding
    per loser, against the best-recalling smaller codec (the fewer bytes on a tie). In the frame's order of
    datasets, then by the loser's bytes per vector."""
    summary = tables.codec_summary(codecs).filter(pl.col("recall_at_10").is_not_null())
    out = []
    for _, group in summary.group_by("dataset", maintain_order=True):
        same = group.to_dicts()
        for a in sorted(same, key=lambda c: (c["bytes_per_vector"], c["codec"])):
            beaten_by = [b for b in same if b["bytes_per_vector"] < a["bytes_per_vector"]
                         and a["recall_at_10"] < b["recall_at_10"] - RECALL_MARGIN]
            if beaten_by:
                best = max(beaten_by, key=lambda b: (b["recall_at_10"], -b["bytes_per_vector"]))
                out.append(_finding(a, best, same))
    return out


def findings(records: Iterable[dict[str, Any]]) -> list[Finding]:
    """Every codec that loses to a smaller one, with the measured reasons (see the module's docstring), from
    quant@1 records (read from files, or computed live by :func:`ruvector_lab.bench.quant.sweep_codec`); records
    not 'ok' are left out. The rule: :func:`frame_findings`."""
    return frame_findings(tables.codec_frame(records))


def findings_frame(found: Iterable[Finding]) -> pl.DataFrame:
    """Findings as a polars frame, one row each (:data:`FINDING_COLUMNS`)."""
    return pl.DataFrame([asdict(f) for f in found], schema=FINDING_COLUMNS)


__all__ = ["ERROR_TO_SPREAD", "FINDING_COLUMNS", "NOROT", "RECALL_MARGIN", "SMALL_SHARE", "Finding", "findings",
           "findings_frame", "frame_findings"]
