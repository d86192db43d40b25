"""Why a codec loses to a smaller one (ruvector_lab.bench.quant_findings) on synthetic quant@1 records, and the
report's quantization sections built from them: the findings, RaBitQ by bit width, and the quantized HNSW builds
against the flat scan of the same codes, with data and without."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from result_records import DATASET, build_record, quant_record, query_record

from ruvector_lab.bench import quant_findings, report, results, tables
from ruvector_lab.bench.quant_findings import Finding, findings, findings_frame

OTHER = DATASET | {"name": "syn-other-8"}


def codec(spec: str, bytes_per_vector: float, recall: float, *, kind: str | None = None, bits: int = 8,
          rotation: str | None = None, order: float | None = None, error: float | None = None,
          share: float | None = None, alignment: float | None = None, reranked: float | None = None,
          dataset: dict[str, Any] = DATASET) -> dict[str, Any]:
    """A quant@1 record with the figures the rule reads; the diagnostics are left out when None (a record from
    before them), ``rotation`` None leaves the codec without one (the kind's default)."""
    rec = quant_record(spec, kind, rerank=((1, recall, 5000.0), (4, reranked if reranked is not None
                                                                     else min(1.0, recall + 0.05), 3000.0)),
                       dataset=dataset)
    rec["codec"]["bits"] = bits
    if rotation is not None:
        rec["codec"]["rotation"] = rotation
    rec |= {"bytes_per_vector": float(bytes_per_vector), "code_bytes": int(bytes_per_vector)}
    if order is not None:
        rec["neighbourhood_order"] = order
    if error is not None:
        rec["neighbourhood_error"] = {"spread": 0.2, "spread_share": share, "error_to_spread": error}
    if alignment is not None:
        rec["rabitq_alignment"] = alignment
    return rec


def only(found: list[Finding]) -> Finding:
    assert len(found) == 1, [f.text for f in found]
    return found[0]


# ------------------------------------------------------------------------------------------------------ the rule
def test_no_finding_when_the_larger_codes_recall_more_or_within_the_margin():
    assert findings([codec("scalar", 8, 0.95), codec("binary", 1, 0.50)]) == []
    assert findings([codec("int4", 4, 0.795), codec("binary", 1, 0.80)]) == []  # 0.005 less: within the margin
    assert findings([codec("scalar", 8, 0.5), codec("binary", 8, 0.9)]) == []  # the same bytes: not smaller
    assert findings([codec("scalar", 8, 0.5, dataset=OTHER), codec("binary", 1, 0.9)]) == []  # other datasets
    assert findings([codec("scalar", 8, 0.5), quant_record("binary", status="not available")]) == []


def test_one_finding_per_loser_against_the_best_recalling_smaller_codec():
    found = findings([codec("scalar", 32, 0.5), codec("int4", 8, 0.7), codec("binary", 4, 0.9),
                      codec("product", 16, 0.6)])
    assert [(f.loser, f.winner) for f in found] == [("int4", "binary"), ("product", "binary"),
                                                    ("scalar", "binary")]
    first = found[0]
    assert (first.loser_bytes, first.winner_bytes, first.loser_recall, first.winner_recall) == (8, 4, 0.7, 0.9)
    assert first.text.startswith("On syn-200-8, int4 (8 B/vector) recalls 0.700 at recall@10 without re-ranking, "
                                 "0.200 less than the smaller binary (4 B/vector, 0.900).")
    assert first.rotation is None and not first.error_cause
    frame = findings_frame(found)
    assert list(frame.columns) == list(quant_findings.FINDING_COLUMNS) and frame.height == 3


def test_the_random_rotation_is_named_the_cause_with_both_alignments():
    found = only(findings([
        codec("rabitq-b4", 20, 0.50, kind="rabitq", bits=4, rotation="random", alignment=0.61, order=0.7),
        codec("rabitq-b4-norot", 20, 0.80, kind="rabitq", bits=4, rotation="none", alignment=0.83, order=0.9),
        codec("rabitq-b2-norot", 12, 0.70, kind="rabitq", bits=2, rotation="none"),  # other bits: not the variant
        codec("binary", 4, 0.60, order=0.8)]))
    assert (found.loser, found.winner, found.rotation, found.rotation_off) == ("rabitq-b4", "rabitq-b2-norot",
                                                                                "cause", "rabitq-b4-norot")
    assert (found.rotation_off_recall, found.loser_alignment, found.rotation_off_alignment) == (0.80, 0.61, 0.83)
    assert "The random rotation is the cause: without it, rabitq-b4-norot recalls 0.800 (+0.300)" in found.text
    assert "the mean <x̄, y> is 0.610 rotated against 0.830 unrotated: the quantized directions lie further" \
        in found.text
    assert "the data's axes carry structure the rotation spreads" in found.text


def test_the_rotation_named_the_cause_says_when_the_alignment_does_not_show_why():
    found = only(findings([codec("rabitq", 6, 0.50, kind="rabitq", bits=1, rotation="random", alignment=0.9),
                           codec("rabitq-norot", 6, 0.70, kind="rabitq", bits=1, rotation="none", alignment=0.8),
                           codec("binary", 4, 0.60)]))
    assert found.rotation == "cause" and "no lower rotated (0.900) than unrotated (0.800)" in found.text
    assert "lie further" not in found.text


def test_the_random_rotation_is_not_the_cause_when_turning_it_off_does_not_help():
    rotated, unrotated = findings([codec("rabitq-b4", 20, 0.50, kind="rabitq", bits=4, rotation="random"),
                                   codec("rabitq-b4-norot", 20, 0.505, kind="rabitq", bits=4, rotation="none"),
                                   codec("binary", 4, 0.60)])
    assert unrotated.loser == "rabitq-b4-norot" and unrotated.rotation is None  # it loses too, with no rotation
    found = rotated
    assert (found.loser, found.rotation, found.rotation_off_recall) == ("rabitq-b4", "not the cause", 0.505)
    assert "The random rotation is not the cause: without it, rabitq-b4-norot recalls 0.505 (+0.005)." \
        in found.text


def test_a_rotation_off_variant_not_measured_is_named_as_the_spec_to_add():
    found = only(findings([codec("rabitq-b4", 20, 0.5, kind="rabitq", bits=4, rotation="random"),
                           codec("binary", 4, 0.6)]))
    assert (found.rotation, found.rotation_off) == ("not measured", "rabitq-b4-norot")
    assert "was not measured: add `rabitq-b4-norot`" in found.text
    # a record from before rotations were recorded held the default: RaBitQ's random rotation
    plain = only(findings([codec("rabitq", 6, 0.5, kind="rabitq", bits=1), codec("binary", 4, 0.6)]))
    assert (plain.rotation, plain.rotation_off) == ("not measured", "rabitq-norot")
    # RaBitQ without its rotation that loses: the rotation is not what is asked about
    off = only(findings([codec("rabitq-norot", 6, 0.5, kind="rabitq", bits=1, rotation="none"),
                         codec("binary", 4, 0.6)]))
    assert off.rotation is None and "rotation" not in off.text


def test_the_neighbourhood_error_is_named_when_it_blurs_the_neighbours():
    found = only(findings([codec("product", 16, 0.30, kind="product", error=2.0, share=0.03, order=0.2),
                           codec("scalar", 8, 0.90, error=0.1, share=0.03, order=0.95)]))
    assert found.error_cause and (found.loser_error_to_spread, found.winner_error_to_spread) == (2.0, 0.1)
    assert "Its reconstruction error is 2.00 times the spread of a query's 100 nearest neighbours (scalar: 0.10)" \
        in found.text
    assert "spans only 3.0% of the data's variance: a codec that minimises its overall error spends it on the " \
           "97.0% between neighbourhoods" in found.text and "errs as much or more" not in found.text
    assert "less faithfully than scalar's (Spearman 0.200 against 0.950)" in found.text
    # a wide neighbourhood: the error is stated, the cluster-centre reading is not
    wide = only(findings([codec("product", 16, 0.30, kind="product", error=2.0, share=0.8),
                          codec("scalar", 8, 0.90, error=0.1, share=0.8)]))
    assert "spans 80.0% of the data's variance." in wide.text and "only" not in wide.text
    # a winner that errs more overall yet orders better: said so, its error misses what separates neighbours
    worse = only(findings([codec("product", 16, 0.30, kind="product", error=1.0, share=0.1),
                           codec("binary", 8, 0.50, error=4.0, share=0.1)]))
    assert worse.error_cause and "(binary: 4.00); binary errs as much or more overall, so its error falls less " \
        "on what separates the neighbours, and that neighbourhood spans only 10.0%" in worse.text
    # below the threshold, or unknown: not a cause
    for loser, winner in ((0.4, 0.1), (None, 0.1), (2.0, None)):
        found = only(findings([codec("product", 16, 0.30, kind="product", error=loser, share=0.03),
                               codec("scalar", 8, 0.90, error=winner, share=0.03)]))
        assert not found.error_cause and "reconstruction error" not in found.text


def test_the_neighbourhood_order_is_always_stated_in_words_that_follow_the_numbers():
    better = only(findings([codec("int4", 8, 0.5, order=0.9), codec("binary", 4, 0.8, order=0.6)]))
    assert "at least as faithfully as binary's (Spearman 0.900 against 0.600), so the order inside the " \
           "neighbourhood does not explain the loss" in better.text
    unknown = only(findings([codec("int4", 8, 0.5), codec("binary", 4, 0.8, order=0.6)]))
    assert unknown.loser_order is None and "not recorded for int4 (a sweep from before" in unknown.text


def test_the_words_come_from_the_numbers_not_the_dataset():
    def sweep(dataset: dict[str, Any]) -> list[dict[str, Any]]:
        return [codec("rabitq-b4", 20, 0.5, kind="rabitq", bits=4, rotation="random", error=1.5, share=0.1,
                      order=0.4, dataset=dataset),
                codec("scalar", 8, 0.9, error=0.2, share=0.1, order=0.9, dataset=dataset)]

    first, second = findings(sweep(DATASET) + sweep(OTHER))
    assert (first.dataset, second.dataset) == (DATASET["name"], OTHER["name"])
    assert first.text.replace(DATASET["name"], "X") == second.text.replace(OTHER["name"], "X")


# --------------------------------------------------------------------------------- the report's sections
def write_depth_tree(root: Path) -> Path:
    """A results tree with a codec sweep that has findings (RaBitQ at three bit widths, one rotation-off
    variant, PQ, scalar), quantized HNSW builds on faiss (PQ from codes and from floats at R 40, scalar at R 20
    whose factor 2 the sweep lacks, RaBitQ without a sweep record), the float graph's index stats in its median
    build, the code graph's at the record's top level."""
    name = DATASET["name"]
    quant = root / "quant" / name
    sweep = [codec("rabitq", 6, 0.40, kind="rabitq", bits=1, rotation="random", alignment=0.7, order=0.5),
             codec("rabitq-b4", 20, 0.70, kind="rabitq", bits=4, rotation="random", alignment=0.8, order=0.7,
                   reranked=0.97),
             codec("rabitq-b7", 30, 0.60, kind="rabitq", bits=7, rotation="random", alignment=0.85, order=0.8),
             codec("rabitq-b7-norot", 30, 0.92, kind="rabitq", bits=7, rotation="none", alignment=0.95, order=0.9),
             codec("product", 16, 0.80, kind="product", error=1.4, share=0.05, order=0.6),
             codec("scalar", 8, 0.90, error=0.05, share=0.05, order=0.95)]
    sweep[4]["codec"]["m"] = 2  # 4 dimensions per subspace on the 8-d data
    for rec in sweep:
        results.write_json(quant / f"{rec['spec']}.json", rec)
    qh = root / "qhnsw" / name / "runs" / name / "faiss"
    stats = {"code_bytes_per_vector": 2, "graph_bytes_per_vector": 136.0, "rerank_float_bytes_per_vector": 32,
             "build_float_bytes_per_vector": 0, "fixed_bytes": 4000}
    for spec, recalls in (("product-gfloat-r40", (0.91, 0.97)), ("product-r40", (0.70, 0.78)),
                          ("scalar-r20", (0.9, 0.95)), ("rabitq-r40", (0.8, 0.85))):
        build = build_record("faiss", quantization=spec)
        if spec == "product-gfloat-r40":
            build["builds"][build["median_build"]]["index_stats"] = stats
            build["builds"][build["median_build"]]["code_scan"] = {"recall": {"1": 0.99, "10": 0.975},
                                                                   "candidates": 40, "seconds": 0.5}
        elif spec == "product-r40":
            build["index_stats"] = stats | {"graph_bytes_per_vector": 120.0}
        results.write_json(qh / f"M8-efc40-{spec}" / "build.json", build)
        for ef, recall in zip((10, 40), recalls, strict=True):
            results.write_json(qh / f"M8-efc40-{spec}" / f"query-ef{ef}-k10.json",
                               query_record("faiss", ef, recall, (900.0 - ef,), quantization=spec))
    return root


def test_the_quantized_builds_are_matched_to_the_flat_scan_of_their_codec_and_re_ranking(tmp_path):
    frame = tables.qhnsw_vs_scan(write_depth_tree(tmp_path))
    assert list(frame.columns) == list(tables.QHNSW_COLUMNS)
    rows = {r["spec"]: r for r in frame.to_dicts()}
    assert set(rows) == {"product-gfloat-r40", "product-r40", "scalar-r20", "rabitq-r40"}
    floats, codes = rows["product-gfloat-r40"], rows["product-r40"]
    assert (floats["codec"], floats["graph"], floats["rerank"], floats["factor"]) == ("product", "float", 40, 4)
    assert (codes["codec"], codes["graph"]) == ("product", "codes")
    assert (floats["ef_best"], floats["recall_at_10"], floats["qps_1"]) == (40, 0.97, 860.0)
    assert (floats["ef_max"], floats["recall_at_ef_max"]) == (40, 0.97)
    reranked = min(1.0, 0.80 + 0.05)  # the product record's factor 4
    assert floats["flat_recall_at_10"] == pytest.approx(reranked) and floats["flat_note"] is None
    assert floats["gap"] == pytest.approx(reranked - 0.97) and codes["gap"] == pytest.approx(reranked - 0.78)
    assert (floats["code_bytes_per_vector"], floats["graph_bytes_per_vector"], floats["fixed_bytes"]) == \
        (2.0, 136.0, 4000)
    assert floats["bytes_per_vector"] == pytest.approx(2 + 136 + 32 + 0 + 4000 / DATASET["n_train"])
    assert codes["graph_bytes_per_vector"] == 120.0  # the stats wherever the record keeps them
    assert floats["scan_recall_at_10"] == 0.975 and floats["scan_gap"] == pytest.approx(0.975 - 0.97)
    assert codes["scan_recall_at_10"] is None and codes["scan_gap"] is None  # no code scan recorded
    scalar = rows["scalar-r20"]
    assert (scalar["factor"], scalar["flat_recall_at_10"]) == (2, None)
    assert scalar["flat_note"] == "the codec sweep of scalar has no re-rank factor 2 (R 20 / k 10)"
    rabitq = rows["rabitq-r40"]
    assert rabitq["codec"] == "rabitq" and rabitq["flat_note"] is None  # the sweep has 'rabitq' at factor 4
    assert rabitq["code_bytes_per_vector"] is None and rabitq["bytes_per_vector"] is None  # no stats: unknown


def test_the_flat_spec_drops_the_graph_and_re_rank_parts_only():
    assert tables.flat_spec("product-m8-b4-opq-gfloat-r40") == "product-m8-b4-opq"
    assert tables.flat_spec("rabitq-b4-norot-r20") == "rabitq-b4-norot"
    assert tables.flat_spec("scalar") == "scalar"


def test_the_report_states_the_findings_the_bit_widths_and_the_graph_gaps(tmp_path):
    root = write_depth_tree(tmp_path / "res")
    text = report.write_report(root, tmp_path / "out", None, {}).read_text()
    section = text[text.index("## Quantization trade-offs"):text.index("## Autotuner")]
    why = section[section.index("### Why a codec loses to a smaller one"):section.index("### RaBitQ by bit width")]
    bullets = [line for line in why.splitlines() if line.startswith("- ")]
    assert len(bullets) == 3  # rabitq-b4, rabitq-b7 and product lose to scalar; rabitq-b7-norot recalls more
    assert any("rabitq-b7 (30 B/vector)" in b and "The random rotation is the cause" in b for b in bullets)
    assert any("rabitq-b4 (20 B/vector)" in b and "add `rabitq-b4-norot`" in b for b in bullets)
    assert any(b.startswith("- On syn-200-8, product (16 B/vector)") and "1.40 times the spread" in b
               for b in bullets)
    bits = section[section.index("### RaBitQ by bit width"):section.index("### Graph built from floats")]
    assert "| syn-200-8 | rabitq-b4 | 4 | 20 | 0.7 | x4 | 0.97 | 0.8 | 0.7 |" in bits
    assert "rabitq-b7-norot" not in bits  # the rotation-off variant is not a bit width
    graph = section[section.index("### Graph built from floats"):]
    assert ("| syn-200-8 | faiss | product | float | 40 | 40 | 0.97 | 0.85 | -0.12 | 0.975 | 0.005 | 0.97 (ef 40) "
            "| 860 | 2 | 136 |") in graph
    assert "On syn-200-8, against the codec sweep's flat scan of the same codec with the same re-ranking: " \
           "float-built graphs match or beat it" in graph
    assert "On syn-200-8, against the index's own code scan (its codes and scoring, no graph, same re-ranking): " \
           "float-built graphs come within 0.005 of it" in graph
    assert "code-built graphs lose up to 0.070 (faiss product-r40 at ef 40)." in graph
    assert "- faiss scalar-r20 on syn-200-8: the codec sweep of scalar has no re-rank factor 2" in graph
    assert "![quantized HNSW, one panel per dataset](plots/qhnsw_bytes_recall.png)" in graph
    assert (tmp_path / "out" / "plots" / "qhnsw_bytes_recall.png").stat().st_size > 5000


def test_the_report_says_when_the_quantization_depth_is_absent(tmp_path):
    text = report.write_report(tmp_path / "none", tmp_path / "bare", None, {}).read_text()
    assert "### Why a codec loses to a smaller one" in text and "No codec sweep in this run's results." in text
    assert "No RaBitQ codec under its random rotation in this run's sweep." in text
    assert "No quantized HNSW builds in this run's results" in text
    assert (tmp_path / "bare" / "plots" / "qhnsw_bytes_recall.png").is_file()  # declared: always written
    # a sweep where every larger codec recalls more, and no stats in the builds: said so
    root = tmp_path / "res"
    for rec in (codec("scalar", 8, 0.95), codec("binary", 1, 0.5)):
        results.write_json(root / "quant" / DATASET["name"] / f"{rec['spec']}.json", rec)
    folder = root / "qhnsw" / DATASET["name"] / "runs" / DATASET["name"] / "faiss" / "M8-efc40-scalar-r40"
    results.write_json(folder / "build.json", build_record("faiss", quantization="scalar-r40"))
    results.write_json(folder / "query-ef10-k10.json", query_record("faiss", 10, 0.9, quantization="scalar-r40"))
    text = report.write_report(root, tmp_path / "out", None, {}).read_text()
    assert "No codec loses to a smaller one on any dataset of this sweep." in text
    assert "code-built graphs lose up to" in text and "float-built" not in text.split("### Graph built")[1]
    assert "The build records carry no index stats" in text
