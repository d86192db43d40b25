"""Codec variants as a researcher names them: the config's bits, rotation and graph, the spec grammar that the
pipeline and CLI read, and the codec sweep's diagnostics that explain a result."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import clustered

from ruvector_lab.bench import groundtruth, quant, results, runner
from ruvector_lab.bench.hdf5 import Dataset
from ruvector_lab.errors import InvalidParameterError, QuantizationError
from ruvector_lab.quantization import (
    GRAPHS,
    KIND_BIT_CHOICES,
    KIND_BITS,
    KIND_ROTATIONS,
    QuantizationConfig,
    make_codec,
)
from ruvector_lab.types import HnswConfig


# ------------------------------------------------------------------------------------------------------- config
def test_defaults_fill_the_kinds_bits_and_rotation():
    for kind, bits in KIND_BITS.items():
        config = QuantizationConfig(kind=kind)  # type: ignore[arg-type]
        assert config.bits == bits and config.rotation == KIND_ROTATIONS[kind][0] and config.graph == "codes"
        assert config.is_plain and config.variant() == ""
    assert QuantizationConfig(kind="rabitq").rotation == "random"
    assert QuantizationConfig(kind="product").rotation == "none"


@pytest.mark.parametrize("kind", ["product", "rabitq"])
def test_every_offered_bit_width_is_accepted_and_others_are_refused(kind):
    for bits in KIND_BIT_CHOICES[kind]:
        assert QuantizationConfig(kind=kind, bits=bits).bits == bits  # type: ignore[arg-type]
    for bad in (0, 9, 16 if kind == "rabitq" else 6):
        with pytest.raises(InvalidParameterError, match="bits"):
            QuantizationConfig(kind=kind, bits=bad)  # type: ignore[arg-type]


def test_fixed_width_kinds_still_refuse_other_bits():
    with pytest.raises(InvalidParameterError, match=r"scalar quantization takes bits in \{8\}"):
        QuantizationConfig(kind="scalar", bits=4)
    with pytest.raises(InvalidParameterError):
        QuantizationConfig(kind="binary", bits=True)  # type: ignore[arg-type]


def test_rotation_and_graph_are_checked_per_kind():
    assert QuantizationConfig(kind="product", rotation="opq").variant() == "rotation opq"
    assert QuantizationConfig(kind="rabitq", rotation="none", bits=4).variant() == "4 bits, rotation none"
    with pytest.raises(InvalidParameterError, match="rotation"):
        QuantizationConfig(kind="scalar", rotation="opq")
    with pytest.raises(InvalidParameterError, match="rotation"):
        QuantizationConfig(kind="rabitq", rotation="opq")
    with pytest.raises(InvalidParameterError, match="rotation"):
        QuantizationConfig(kind="product", rotation=3)  # type: ignore[arg-type]
    for graph in GRAPHS:
        assert QuantizationConfig(kind="scalar", graph=graph).graph == graph  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="graph"):
        QuantizationConfig(kind="scalar", graph="vectors")  # type: ignore[arg-type]


def test_round_trip_and_files_written_before_the_new_fields():
    config = QuantizationConfig(kind="product", m=96, bits=4, rotation="opq", graph="float", seed=3)
    assert QuantizationConfig.from_dict(config.to_dict()) == config
    old = {"kind": "rabitq", "m": 8, "bits": 1, "train_size": 25_000, "seed": 0}
    assert QuantizationConfig.from_dict(old) == QuantizationConfig(kind="rabitq")
    with pytest.raises(InvalidParameterError, match="unknown"):
        QuantizationConfig.from_dict({**old, "shape": "round"})
    # an HnswConfig written to JSON and read back keeps the variant
    hnsw = HnswConfig(dimensions=16, quantization=config.to_dict(), rerank=10)  # type: ignore[arg-type]
    assert hnsw.quantization == config


def test_check_served_names_the_backend_and_the_reason():
    QuantizationConfig(kind="scalar").check_served("usearch", "i8 only", float_graph="no build storage")
    with pytest.raises(QuantizationError, match=r"usearch .* not 4 bits: its codes are fixed"):
        QuantizationConfig(kind="rabitq", bits=4).check_served("usearch", "its codes are fixed")
    with pytest.raises(QuantizationError, match=r"graph='float'.*rows are quantized on insert"):
        QuantizationConfig(kind="scalar", graph="float").check_served(
            "usearch", "-", float_graph="rows are quantized on insert")
    # a flat index has no graph: graph='float' is no reason to refuse
    QuantizationConfig(kind="rabitq", graph="float").check_served("ruvector", "-")


# --------------------------------------------------------------------------------------------------- spec grammar
@pytest.mark.parametrize(("spec", "expected"), [
    ("scalar", results.SpecFields("scalar")),
    ("product-m48-r40", results.SpecFields("product", m=48, rerank=40)),
    ("product-w4-b4-opq", results.SpecFields("product", width=4, bits=4, rotation="opq")),
    ("rabitq-b4-norot-gfloat-r100", results.SpecFields("rabitq", bits=4, rotation="none", graph="float",
                                                       rerank=100)),
])
def test_spec_fields_reads_every_part(spec, expected):
    assert results.spec_fields(spec) == expected
    assert results.split_spec(spec) == (expected.kind, expected.m, expected.rerank)


@pytest.mark.parametrize("spec", ["scalar-x", "product-m48-m24", "product-m48-w4", "rabitq-opq-norot",
                                  "scalar-gfloat-gfloat", "product-b"])
def test_bad_specs_are_refused_by_name(spec):
    with pytest.raises(InvalidParameterError, match=repr(spec).replace("-", r"\-")):
        results.spec_fields(spec)


def test_parse_quantization_turns_a_width_into_subspaces_on_any_dimension():
    assert runner.parse_quantization("product", 384).m == 48
    assert runner.parse_quantization("product-w4-b4", 784).m == 196
    assert runner.parse_quantization("product-w4-b4", 784).bits == 4
    assert runner.parse_quantization("product-m24", 784).m == 24  # the codec refuses it later, with its reason
    with pytest.raises(InvalidParameterError, match="do not divide 784"):
        runner.parse_quantization("product-w3", 784)
    with pytest.raises(InvalidParameterError, match="only 'product'"):
        runner.parse_quantization("rabitq-w4", 384)
    rabitq = runner.parse_quantization("rabitq-b4-norot-gfloat", 384)
    assert (rabitq.bits, rabitq.rotation, rabitq.graph) == (4, "none", "float")
    with pytest.raises(InvalidParameterError, match="rotation"):
        runner.parse_quantization("scalar-opq", 384)


# ----------------------------------------------------------------------------------------- the sweep's diagnostics
def _clustered_set(spread: float, n: int = 3000, d: int = 32) -> Dataset:
    rng = np.random.default_rng(1)
    train = clustered(n, d, clusters=10, seed=2, spread=spread)
    picks = rng.choice(n, 60, replace=False)
    test = (train[picks] + spread * 0.5 * rng.standard_normal((60, d))).astype(np.float32)
    ds = Dataset(f"c{spread}", train, test, "euclidean")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 100, ds.metric)
    return ds


def test_neighbourhood_error_is_small_where_neighbourhoods_are_wide_and_large_where_they_are_tight():
    wide, tight = _clustered_set(1.0), _clustered_set(0.02)
    for ds in (wide, tight):
        codec = make_codec(QuantizationConfig(kind="scalar"), ds.dimensions, metric="euclidean")
        codec.train(ds.train)
        decoded = codec.decode(codec.encode(ds.train))
        ds.error = quant.neighbourhood_error(ds.train, decoded, ds.neighbors, ds.metric)  # type: ignore[attr-defined]
    assert 0 < tight.error["spread_share"] < wide.error["spread_share"] <= 1.0  # type: ignore[attr-defined]
    assert tight.error["error_to_spread"] > 10 * wide.error["error_to_spread"]  # type: ignore[attr-defined]


def test_neighbourhood_order_is_one_for_exact_estimates_and_lower_for_coarse_codes():
    ds = _clustered_set(0.5)
    queries = ds.test
    exact = make_codec(QuantizationConfig(kind="scalar"), ds.dimensions, metric="euclidean").train(ds.train)
    coarse = make_codec(QuantizationConfig(kind="product", m=4), ds.dimensions, metric="euclidean")
    coarse.train(ds.train)
    scores = {}
    for name, codec in (("scalar", exact), ("product", coarse)):
        codes = codec.encode(ds.train)
        scores[name] = quant.neighbourhood_order(codec, queries, codes, codec.decode(codes), ds.neighbors,
                                                 ds.distances, ds.metric)
    assert 0.95 < scores["scalar"] <= 1.0
    assert scores["product"] < scores["scalar"] - 0.1


def test_rabitq_alignment_is_the_codes_own_factor_and_none_for_other_codecs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 64)).astype(np.float32)
    codec = make_codec(QuantizationConfig(kind="rabitq"), 64, metric="euclidean").train(x)
    alignment = quant.rabitq_alignment(codec, codec.encode(x))
    # one sign bit per Gaussian coordinate: E|g| / sqrt(E g^2) = sqrt(2 / pi)
    assert alignment == pytest.approx(np.sqrt(2 / np.pi), abs=0.02)
    scalar = make_codec(QuantizationConfig(kind="scalar"), 64, metric="euclidean").train(x)
    assert quant.rabitq_alignment(scalar, scalar.encode(x)) is None


def test_sweep_record_carries_the_variant_and_the_diagnostics():
    ds = _clustered_set(0.5)
    record = quant.sweep_codec(ds, "product-w8", factors=(1, 4), n_queries=60)
    assert record["status"] == "ok"
    assert record["codec"]["m"] == 4 and record["codec"]["rotation"] == "none"
    assert -1.0 <= record["neighbourhood_order"] <= 1.0
    assert set(record["neighbourhood_error"]) == {"spread", "spread_share", "error_to_spread"}
    assert record["rabitq_alignment"] is None
    from ruvector_lab.bench import schemas

    schemas.validate(record)
    refused = quant.sweep_codec(ds, "scalar-opq", factors=(1,), n_queries=10)
    assert refused["status"] == "not available" and "rotation" in refused["reason"]


def test_cli_checks_a_codec_spec_before_anything_is_loaded(tmp_path):
    from typer.testing import CliRunner

    from ruvector_lab import cli

    def build(spec: str):
        return CliRunner().invoke(cli.app, ["build", "no-such-set", "faiss", "--quantization", spec,
                                            "--datasets-dir", str(tmp_path)])

    for bad, word in (("scalar-opq", "rotation"), ("rabitq-w4", "product"), ("rabitq-b9", "bits"),
                      ("product-gfloat-gfloat", "twice")):
        result = build(bad)
        assert result.exit_code == 2 and word in result.output, (bad, result.output)
    accepted = build("product-w4-b4-opq-gfloat-r40")
    assert "no HDF5 file" in accepted.output and "quantization" not in accepted.output  # past the spec check


# ------------------------------------------------------------------------------------------- the own code scan
def _pq_index(graph: str, rerank: int = 0):
    import ruvector_lab as rl

    index = rl.HnswIndex(rl.HnswConfig(dimensions=16, m=8, ef_construction=40, metric="euclidean", rerank=rerank,
                                       quantization=QuantizationConfig(kind="product", m=4, graph=graph)),
                         backend="faiss")
    return index


def test_scan_codes_returns_ids_and_leaves_deleted_ones_out():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1500, 16)).astype(np.float32)
    index = _pq_index("float")
    index.insert_batch([f"v{i}" for i in range(len(x))], x)
    scanned = index.scan_codes(x[:20], k=5)
    assert scanned.ids.shape == (20, 5) and scanned.scores.shape == (20, 5)
    assert np.mean(scanned.ids[:, 0] == np.array([f"v{i}" for i in range(20)])) >= 0.8  # a row finds itself
    index.delete("v0")
    assert "v0" not in set(index.scan_codes(x[:1], k=3).ids[0])


def test_scan_codes_finds_the_best_code_scores_the_graph_can_only_approach():
    rng = np.random.default_rng(4)
    x = clustered(3000, 16, clusters=30, seed=5, spread=0.4)
    q = (x[rng.choice(len(x), 50, replace=False)] + 0.05 * rng.standard_normal((50, 16))).astype(np.float32)
    index = _pq_index("codes")
    index.insert_batch([str(i) for i in range(len(x))], x)
    scanned, graph = index.scan_codes(q, k=10), index.search_batch(q, k=10, ef_search=10)
    # the same scoring over every code: each rank's score is at least as good as the graph's at that rank
    assert np.all(scanned.scores <= graph.scores + 1e-5)
    assert np.any(scanned.scores < graph.scores - 1e-5)  # and the small ef graph misses some
    wide = index.search_batch(q, k=10, ef_search=3000)  # a graph search that visits everything finds them all
    assert np.allclose(np.sort(wide.scores, axis=1), np.sort(scanned.scores, axis=1), atol=1e-5)


def test_scan_codes_refuses_bad_input_and_backends_without_one():
    import ruvector_lab as rl
    from ruvector_lab.errors import BackendUnavailableError, DimensionMismatchError, EmptyIndexError

    index = _pq_index("codes")
    with pytest.raises(EmptyIndexError):
        index.scan_codes(np.zeros((1, 16), np.float32))
    index.insert_batch([str(i) for i in range(300)], np.random.default_rng(0).standard_normal((300, 16)))
    with pytest.raises(DimensionMismatchError):
        index.scan_codes(np.zeros((1, 15), np.float32))
    with pytest.raises(InvalidParameterError):
        index.scan_codes(np.zeros((1, 16), np.float32), k=0)
    plain = rl.HnswIndex(rl.HnswConfig(dimensions=16, metric="euclidean"), backend="faiss")
    plain.insert("a", np.ones(16, np.float32))
    with pytest.raises(BackendUnavailableError, match="no code scan"):
        plain.scan_codes(np.ones((1, 16), np.float32))


def test_rabitq_l2_estimates_do_not_degrade_when_the_data_sits_far_from_the_origin():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2000, 64)).astype(np.float32)
    queries = rng.standard_normal((30, 64)).astype(np.float32)
    found = []
    for shift in (0.0, 50.0):  # the same geometry moved away from the origin (like image pixels, all >= 0)
        x, q = base + shift, queries + shift
        codec = make_codec(QuantizationConfig(kind="rabitq"), 64, metric="euclidean").train(x)
        estimates = codec.distance(q, codec.encode(x))
        truth = np.linalg.norm(q[:, None, :] - x[None, :, :], axis=-1)
        top = np.argsort(truth, axis=1)[:, :10]
        short = np.argsort(estimates, axis=1)[:, :40]
        found.append(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, short, strict=True)]))
    assert found[1] == pytest.approx(found[0], abs=0.03)  # only |q - c| enters the estimate's error
    assert found[0] > 0.5  # 1 bit on 64-d Gaussian data, 40 candidates


def test_rabitq_alignment_per_row_checks_its_codes():
    x = np.random.default_rng(6).standard_normal((50, 32)).astype(np.float32)
    codec = make_codec(QuantizationConfig(kind="rabitq", bits=4), 32, metric="euclidean").train(x)
    per_row = codec.alignment(codec.encode(x))
    assert per_row.shape == (50,) and np.all((per_row > 0.9) & (per_row <= 1.0))  # 4 bits: close to the vectors
    with pytest.raises(QuantizationError):
        codec.alignment(np.zeros((2, 3), np.uint8))


def test_hnsw_specs_come_from_a_list_or_a_mapping_per_dataset():
    listed = {"hnsw": ["product-r40"], "hnsw_datasets": ["a", "b"]}
    assert quant.hnsw_specs(listed, "a") == ["product-r40"] and quant.hnsw_specs(listed, "c") == []
    mapped = {"hnsw": {"a": ["rabitq-r40", "rabitq-gfloat-r40"]}, "hnsw_datasets": ["a", "b"]}
    assert quant.hnsw_specs(mapped, "a") == ["rabitq-r40", "rabitq-gfloat-r40"]
    assert quant.hnsw_specs(mapped, "b") == []  # listed in hnsw_datasets, given no specs
    with pytest.raises(InvalidParameterError, match=r"quantization\.hnsw"):
        quant.hnsw_specs({"hnsw": "product-r40", "hnsw_datasets": ["a"]}, "a")


def test_sweep_trains_on_the_sample_and_threads_it_is_given():
    ds = _clustered_set(0.5)
    record = quant.sweep_codec(ds, "product-w8", factors=(1,), n_queries=20, train_size=500, train_threads=2)
    assert record["codec"]["train_size"] == 500 and record["threads"]["train"] >= 1


def test_codec_specs_may_differ_per_dataset():
    assert quant.codec_specs({"codecs": ["scalar", "binary"]}, "any") == ["scalar", "binary"]
    mapped = {"codecs": {"a": ["rabitq", "rabitq-norot"], "b": ["product"]}}
    assert quant.codec_specs(mapped, "a") == ["rabitq", "rabitq-norot"] and quant.codec_specs(mapped, "c") == []


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_the_sweep_ranks_reconstructing_codecs_on_decoded_rows_exactly_as_their_distances(metric):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((800, 32)).astype(np.float32)
    q = rng.standard_normal((10, 32)).astype(np.float32)
    for kind in quant.RECONSTRUCTING:
        codec = make_codec(QuantizationConfig(kind=kind, m=8), 32, metric=metric).train(x)  # type: ignore[arg-type]
        codes = codec.encode(x)
        fast = quant._code_scores(codec, q, codes, codec.decode(codes), metric)
        slow = codec.distance(q, codes)
        top_fast, top_slow = np.argsort(fast, axis=1)[:, :20], np.argsort(slow, axis=1)[:, :20]
        assert np.mean(top_fast == top_slow) > 0.95, kind  # the same order, up to float ties
