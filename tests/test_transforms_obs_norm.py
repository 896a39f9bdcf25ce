"""SafeVecNorm: TorchRL's VecNormV2 statistics without the NaN of a negative float32 variance."""
import torch
from tensordict import TensorDict
from torchrl.envs import VecNormV2

from aeon_trl.transforms.obs_norm import SafeVecNorm


def _feed(norm, batches):
    outs = []
    for x in batches:
        td = TensorDict({"observation": x}, batch_size=x.shape[:1])
        outs.append(norm._step(td, td.clone())["observation"])
    return torch.stack(outs)


def test_near_constant_feature_gives_no_nan_where_vecnormv2_does():
    torch.manual_seed(0)
    batches = [8.0 + 1e-6 * torch.randn(1, 3) for _ in range(200)]
    plain = _feed(VecNormV2(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True), batches)
    safe = _feed(SafeVecNorm(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True), batches)
    assert torch.isnan(plain).any(), "the float32 cancellation this class guards against should show in VecNormV2"
    assert torch.isfinite(safe).all()


def test_statistics_equal_the_running_mean_and_std():
    torch.manual_seed(1)
    data = torch.randn(50, 8, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([0.0, -5.0, 2.0, 40.0])
    norm = SafeVecNorm(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True)
    out = _feed(norm, list(data))
    seen = data.reshape(-1, 4).double()
    torch.testing.assert_close(norm.loc["observation"].double(), seen.mean(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm.scale["observation"].double(), seen.std(0, correction=0), rtol=1e-3, atol=1e-4)
    # The last batch was normalized with statistics that include it.
    expected = (data[-1] - norm.loc["observation"]) / norm.scale["observation"]
    torch.testing.assert_close(out[-1], expected, rtol=1e-4, atol=1e-4)


def test_fast_path_matches_vecnormv2_step_for_step():
    # SafeVecNorm computes VecNormV2's formulas per key; where VecNormV2 has no NaN both agree exactly
    torch.manual_seed(2)
    batches = [torch.randn(16, 5) * 3 + 1 for _ in range(30)]
    kwargs = dict(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True)
    plain, safe = VecNormV2(**kwargs), SafeVecNorm(**kwargs)
    torch.testing.assert_close(_feed(safe, batches), _feed(plain, batches), rtol=0, atol=1e-6)
    for stat in ("loc", "scale"):
        torch.testing.assert_close(getattr(safe, stat)["observation"], getattr(plain, stat)["observation"],
                                   rtol=0, atol=1e-6)
    assert safe._count["observation"].item() == plain._count["observation"].item() == 16 * 30
