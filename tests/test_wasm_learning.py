"""learning-wasm's MicroLoRA called from Python, held to a NumPy reference of the crate's formulas."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_wasm

from ruvector_lab.errors import (
    BackendError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
)
from ruvector_lab.wasm import loader
from ruvector_lab.wasm.learning import (
    LearningModule,
    MicroLoRA,
    fast_sqrt,
    reference_adapt,
    reference_down,
    reference_forward,
)

pytestmark = requires_wasm(loader.LEARNING_WASM)


def test_a_fresh_adapter_is_the_identity():
    with MicroLoRA(dim=16) as lora:
        x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
        np.testing.assert_array_equal(lora.forward(x), x)
        assert (lora.dim, lora.alpha, lora.learning_rate) == (16, pytest.approx(0.1), pytest.approx(0.01))
        assert lora.delta_norm == 0.0 and lora.adapt_count == 0


@pytest.mark.parametrize("dim", [1, 8, 100, 256])
def test_forward_and_adapt_match_the_numpy_reference(dim):
    rng = np.random.default_rng(dim)
    alpha, lr = 0.7, 0.05
    down, up = reference_down(dim), np.zeros((2, dim), np.float32)
    with MicroLoRA(dim=dim, alpha=alpha, learning_rate=lr) as lora:
        for step in range(6):
            grad = rng.standard_normal(dim).astype(np.float32)
            if step % 2:
                lora.adapt(grad)
                up = reference_adapt(down, up, grad, lr)
            else:
                lora.adapt_with_reward(grad, 0.5 + step)
                up = reference_adapt(down, up, grad, lr, improvement=0.5 + step)
        x = rng.standard_normal((5, dim)).astype(np.float32)
        got = lora.forward(x)
        want = reference_forward(x, down, up, alpha)
        assert np.abs(got - x).max() > 1e-5  # the adapter does change its input
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(lora.forward_buffered(x[0]), got[0], atol=1e-6)
        assert lora.forward_count == 6 and lora.adapt_count == 6
        assert lora.delta_norm == pytest.approx(alpha * np.linalg.norm(up), rel=3e-3)
        assert lora.param_count == 2 * dim + 2 * 256


def test_forward_is_low_rank_and_linear():
    with MicroLoRA(dim=32, alpha=1.0, learning_rate=0.5) as lora:
        rng = np.random.default_rng(1)
        for _ in range(4):
            lora.adapt(rng.standard_normal(32).astype(np.float32))
        x = rng.standard_normal((40, 32)).astype(np.float32)
        delta = (lora.forward(x) - x).astype(np.float64)
        assert np.linalg.matrix_rank(delta, tol=1e-6) <= 2
        a, b = x[0], x[1]
        np.testing.assert_allclose(lora.forward(a + b) - (a + b), delta[0] + delta[1], atol=1e-5)


def test_reward_and_zero_gradient_rules():
    with MicroLoRA(dim=8) as lora:
        grad = np.arange(1, 9, dtype=np.float32)
        lora.adapt_with_reward(grad, 0.0)
        lora.adapt_with_reward(grad, -1.0)
        lora.adapt(np.zeros(8, np.float32))
        assert lora.delta_norm == 0.0
        lora.adapt_with_reward(grad, 5.0)  # clamped to 2
        up = reference_adapt(reference_down(8), np.zeros((2, 8), np.float32), grad, 0.01, improvement=5.0)
        assert lora.delta_norm == pytest.approx(0.1 * np.linalg.norm(up), rel=3e-3)
        lora.reset()
        assert lora.delta_norm == 0.0 and lora.adapt_count == 0 and lora.forward_count == 0
        np.testing.assert_array_equal(lora.forward(grad), grad)


def test_reference_helpers():
    down = reference_down(256)
    assert down.shape == (256, 2) and down.dtype == np.float32
    bound = np.sqrt(2 / 256) * 0.1 / 2
    assert np.abs(down).max() <= bound * (1 + 1e-6) and down[0, 0] == pytest.approx(-bound)
    np.testing.assert_array_equal(reference_down(256), down)
    for value in (1e-12, 0.5, 2.0, 12345.0):
        assert float(fast_sqrt(value)) == pytest.approx(np.sqrt(value), rel=2e-3)
    assert fast_sqrt(0.0) == 0.0
    with pytest.raises(InvalidParameterError):
        reference_down(0)


def test_bad_input_is_refused():
    for dim in (0, 257, True, 2.5):
        with pytest.raises(InvalidParameterError):
            MicroLoRA(dim=dim)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        MicroLoRA(dim=4, alpha=float("inf"))
    with pytest.raises(InvalidParameterError):
        MicroLoRA(dim=4, learning_rate="fast")  # type: ignore[arg-type]
    with MicroLoRA(dim=4) as lora:
        with pytest.raises(DimensionMismatchError):
            lora.forward(np.ones(5, np.float32))
        with pytest.raises(InvalidVectorError):
            lora.forward(np.array([1.0, np.nan, 0.0, 0.0]))
        with pytest.raises(InvalidVectorError):
            lora.forward(np.array(["a", "b", "c", "d"]))
        with pytest.raises(DimensionMismatchError):
            lora.adapt(np.ones((2, 4), np.float32))
        with pytest.raises(InvalidParameterError):
            lora.adapt_with_reward(np.ones(4, np.float32), float("nan"))
        assert lora.forward_count == 0  # nothing reached the module


def test_memory_stays_flat_over_many_calls():
    with MicroLoRA(dim=64) as lora:
        rng = np.random.default_rng(2)
        x = rng.standard_normal(64).astype(np.float32)
        lora.forward(x)
        lora.adapt(x)
        start = lora.memory_bytes
        for _ in range(3000):
            lora.forward(x)
            lora.adapt(x)
        assert lora.memory_bytes == start
        assert lora._module.memory.allocated_blocks == 0  # every returned Vec was freed


def test_module_errors_become_backend_errors():
    module = LearningModule()
    with pytest.raises(BackendError, match="null pointer passed to rust"):
        module.call("wasmmicrolora_dim", 0)  # the module's own throw, raised through the import
    with pytest.raises(BackendError, match="earlier"):
        module.call("wasmmicrolora_dim", 0)
    module.close()
    lora = MicroLoRA(dim=4)
    lora.close()
    lora.close()
    with pytest.raises(BackendError, match="closed"):
        lora.forward(np.ones(4, np.float32))


def test_agrees_with_the_library_numpy_lora_given_the_same_weights():
    from ruvector_lab.learning.lora import LoRAWeights, apply

    dim, alpha, lr = 48, 0.25, 0.1
    rng = np.random.default_rng(4)
    up = np.zeros((2, dim), np.float32)
    with MicroLoRA(dim=dim, alpha=alpha, learning_rate=lr) as lora:
        for _ in range(3):
            grad = rng.standard_normal(dim).astype(np.float32)
            lora.adapt(grad)
            up = reference_adapt(reference_down(dim), up, grad, lr)
        weights = LoRAWeights(reference_down(dim), up, alpha, "micro")
        x = rng.standard_normal((10, dim)).astype(np.float32)
        np.testing.assert_allclose(lora.forward(x), apply(weights, x), atol=1e-5)
