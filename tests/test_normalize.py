"""adaptive_normalize against an element-wise hand computation, for NumPy and torch inputs."""

import math

import numpy as np
import pytest
import torch

from aeon_trl.normalize import adaptive_normalize


def _reference(state, mean, var, eps, clip):
    out = [(s - m) / math.sqrt(v + eps) for s, m, v in zip(state, mean, var)]
    return [min(max(o, -clip), clip) for o in out] if clip is not None else out


STATE = [3.0, -1.0, 100.0, 0.5]
MEAN = [1.0, 0.0, 0.0, 0.5]
VAR = [4.0, 0.25, 1.0, 0.0]  # a constant feature (var 0) must stay finite thanks to eps


@pytest.mark.parametrize("clip", [10.0, None])
def test_numpy_in_numpy_out(clip):
    out = adaptive_normalize(np.array(STATE), np.array(MEAN), np.array(VAR), eps=1e-8, clip=clip)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, _reference(STATE, MEAN, VAR, 1e-8, clip), rtol=1e-12)
    assert (out[2] == 10.0) == (clip is not None)  # 100 sigma away: clipped only when asked


def test_torch_in_torch_out_keeps_dtype_and_broadcasts():
    state = torch.tensor([STATE, STATE], dtype=torch.float32)  # [batch, features]
    out = adaptive_normalize(state, torch.tensor(MEAN), np.array(VAR), eps=1e-8, clip=5.0)  # mixed stat types
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 4)
    expected = torch.tensor(_reference(STATE, MEAN, VAR, 1e-8, 5.0), dtype=torch.float32)
    torch.testing.assert_close(out, expected.expand(2, 4))


def test_numpy_float32_state_stays_float32_and_ints_become_float():
    out = adaptive_normalize(np.array(STATE, dtype=np.float32), np.array(MEAN), np.array(VAR))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(STATE, MEAN, VAR, 1e-8, 10.0), rtol=1e-6)
    pixels = adaptive_normalize(np.array([0, 255], dtype=np.uint8), 127.5, 127.5**2)
    np.testing.assert_allclose(pixels, [-1.0, 1.0], rtol=1e-6)
    assert adaptive_normalize(torch.tensor([0, 255]), 127.5, 127.5**2).dtype == torch.get_default_dtype()


def test_standardize_is_the_one_formula():
    from aeon_trl.normalize import standardize
    x, loc, scale = torch.tensor([[0.0, 30.0]]), torch.tensor([1.0, 2.0]), torch.tensor([2.0, 0.5])
    assert torch.equal(standardize(x, loc, scale), (x - loc) / scale)
    assert torch.equal(standardize(x, loc, scale, clip=5.0), ((x - loc) / scale).clamp(-5, 5))
    np.testing.assert_array_equal(standardize(x.numpy(), loc.numpy(), scale.numpy(), 5.0),
                                  np.clip((x.numpy() - loc.numpy()) / scale.numpy(), -5, 5))
