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


# ---- ObsNorm: the one handle on an env stack's normalization ------------------------------------------------
def _pendulum(**overrides):
    from aeon_trl.config import Config
    from aeon_trl.envs import make_env
    cfg = Config.from_dict({"env_id": "Pendulum-v1", "env_backend": "serial", "num_envs": 2, "steps_per_env": 32,
                            "batch_size": 32, "obs_clip": 3.0, **overrides})
    return make_env(cfg)


def test_obs_norm_finds_the_env_normalizers_and_applies_the_policys_view():
    from aeon_trl.transforms.obs_norm import ObsNorm
    from aeon_trl.transforms.reward import ReturnScaling
    env = _pendulum()
    try:
        norm = ObsNorm.of(env)
        assert isinstance(norm.vecnorm, SafeVecNorm) and isinstance(norm.reward, ReturnScaling)
        assert norm.clip == 3.0 and norm.key == "observation"
        raw = torch.tensor([[1.0, 0.0, 8.0], [0.0, 1.0, -8.0]])
        env.rollout(5)
        assert norm.initialized is True
        loc, scale = norm.vecnorm.loc["observation"], norm.vecnorm.scale["observation"]
        assert torch.equal(norm.normalize(raw), ((raw - loc) / scale).clamp(-3.0, 3.0))
        exported = norm.export()
        assert torch.equal(exported(raw), norm.normalize(raw))
    finally:
        env.close()


def test_obs_norm_state_round_trip_freeze_and_fold_in():
    from aeon_trl.transforms.obs_norm import OBS_NORM, REWARD_NORM, ObsNorm
    from aeon_trl import _compat
    src_env, dst_env = _pendulum(), _pendulum()
    try:
        src_env.rollout(8)
        src, dst = ObsNorm.of(src_env), ObsNorm.of(dst_env)
        state = src.state_dict()
        assert set(state) == {OBS_NORM, REWARD_NORM}
        dst.load_state_dict(state, freeze=True)
        assert dst.vecnorm.frozen and dst.reward.frozen
        raw = torch.randn(4, 3)
        assert torch.equal(dst.normalize(raw), src.normalize(raw))
        dst_loc = dst.vecnorm.state_dict()
        assert all(v.data_ptr() != dst_loc[k].data_ptr() for k, v in state[OBS_NORM].items()
                   if isinstance(v, torch.Tensor))  # copied: the source statistics stay as they are
        count = lambda n: _compat.vecnorm_moments(n.vecnorm)[2]["observation"].item()  # noqa: E731
        before = count(src)
        src.fold_in(torch.randn(10, 3, dtype=torch.float64))
        assert count(src) == before + 10
        src.freeze()
        src.fold_in(torch.randn(10, 3))
        assert count(src) == before + 10  # frozen statistics take nothing in
    finally:
        src_env.close()
        dst_env.close()


def test_obs_norm_without_normalization_is_the_identity():
    from aeon_trl.transforms.obs_norm import ObsNorm
    env = _pendulum(norm_obs=False, norm_reward=False)
    try:
        norm = ObsNorm.of(env)
        raw = torch.randn(2, 3)
        assert norm.vecnorm is None and norm.state_dict() == {} and torch.equal(norm.normalize(raw), raw)
        norm.freeze(), norm.fold_in(raw), norm.load_state_dict({"obs_norm": {}}, freeze=True)
        assert torch.equal(norm.export()(raw), raw)
    finally:
        env.close()
