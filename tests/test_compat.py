"""aeon_trl._compat: the installed torchrl/tensordict/envpool are the tested ones, every private attribute it
touches still exists, each accessor returns what the private attribute holds, and the from_any fast path is
opt-in (nothing is patched at import) and returns what tensordict returns."""
import importlib
import importlib.util
import inspect
import subprocess
import sys

import gymnasium as gym
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs import GymEnv, SerialEnv, TransformedEnv

from aeon_trl import _compat


def _resolve(path: str):
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def test_installed_versions_are_the_tested_ones():
    untested = _compat.untested_versions()
    assert not untested, (
        f"untested versions {untested} (tested: {_compat.TESTED_VERSIONS}): aeon_trl._compat reaches into private "
        "internals of these packages. Check every function in aeon_trl/_compat.py against the new sources, run "
        "this file, then update TESTED_VERSIONS")
    for dist in ("torchrl", "tensordict", "gymnasium"):
        assert _compat.installed_version(dist) is not None


@pytest.mark.parametrize("path,names", [*_compat.PRIVATE_ATTRIBUTES.items(),
                                        *_compat.OVERRIDDEN_PRIVATE_METHODS.items()])
def test_private_attributes_still_exist(path, names):
    owner = _resolve(path)
    for name in names:
        assert hasattr(owner, name), f"{path}.{name} is gone: update aeon_trl._compat"


@pytest.mark.parametrize("path,names", list(_compat.OVERRIDDEN_PRIVATE_METHODS.items()))
def test_overridden_private_methods_keep_their_signature(path, names):
    ours = {"torchrl.objectives.ClipPPOLoss": _compat.ClipPPOLossHooks, "torchrl.envs.VecNormV2": _compat.VecNormHooks,
            "torchrl.data.PrioritizedSampler": _compat.PrioritizedSamplerHooks,
            "torchrl.envs.ParallelEnv": _compat.PollingParallelEnv}[path]
    for name in names:
        theirs = inspect.signature(getattr(_resolve(path), name))
        mine = inspect.signature(getattr(ours, name))
        assert [p for p in mine.parameters if p != "kwargs"] == \
            [p for p in theirs.parameters if p != "kwargs"][:len(mine.parameters) - ("kwargs" in mine.parameters)], \
            f"{path}.{name} changed its signature: update the hook in aeon_trl._compat"


def test_our_classes_override_only_the_public_hook_names():
    """AdvancedClipPPOLoss, SafeVecNorm and PPOPrioritizedSampler reach torchrl's private steps only through
    _compat's hook bases: none of them defines a method named like the private one it replaces."""
    from aeon_trl.data.prioritized import PPOPrioritizedSampler
    from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
    from aeon_trl.transforms.obs_norm import SafeVecNorm
    for cls, hooks in ((AdvancedClipPPOLoss, _compat.ClipPPOLossHooks), (SafeVecNorm, _compat.VecNormHooks),
                       (PPOPrioritizedSampler, _compat.PrioritizedSamplerHooks)):
        assert issubclass(cls, hooks)
        private = {n for names in _compat.OVERRIDDEN_PRIVATE_METHODS.values() for n in names}
        assert not private & set(vars(cls)), f"{cls.__name__} overrides a private torchrl method itself"


def test_env_accessors():
    env = SerialEnv(2, lambda: GymEnv("Pendulum-v1"))
    try:
        env.reset()
        workers = _compat.serial_env_workers(env)
        assert len(workers) == 2 and all(isinstance(w, GymEnv) for w in workers)
        assert isinstance(_compat.gym_env_of(workers[0]), gym.Env)
        assert _compat.serial_env_uses_buffers(env) in (True, False)
        limit = _compat.gym_env_of(workers[0])
        while not isinstance(limit, gym.wrappers.TimeLimit):
            limit = limit.env
        _compat.set_time_limit_elapsed(limit, 7)
        assert _compat.time_limit_elapsed(limit) == 7
    finally:
        env.close()


def test_seed_chain_is_what_serial_env_gives_its_envs():
    seeds = _compat.seed_chain(5, 3)
    assert seeds[0] == 5 and len(set(seeds)) == 3
    env = SerialEnv(3, lambda: GymEnv("Pendulum-v1"))
    try:
        assert env.set_seed(5) == _compat.seed_chain(5, 4)[-1]  # SerialEnv hands env i the i-th link
    finally:
        env.close()


def test_collector_accessors():
    from torchrl.collectors import Collector
    from torchrl.envs.utils import RandomPolicy
    env = GymEnv("Pendulum-v1")
    collector = Collector(env, RandomPolicy(env.action_spec), frames_per_batch=8, total_frames=-1, use_buffers=False)
    try:
        assert "observation" in _compat.collector_carrier(collector).keys()
        _compat.set_collector_frames_per_batch(collector, 16)
        assert next(iter(collector)).numel() == 16
    finally:
        collector.shutdown()


def test_vecnorm_accessors():
    from aeon_trl.transforms.obs_norm import SafeVecNorm
    norm = SafeVecNorm(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True)
    env = TransformedEnv(GymEnv("Pendulum-v1"), norm)
    env.reset()
    loc, var, count = _compat.vecnorm_moments(norm)
    n = count["observation"].item()
    _compat.vecnorm_update(norm, TensorDict({"observation": torch.ones(4, 3)}, batch_size=[4]))
    assert _compat.vecnorm_moments(norm)[2]["observation"].item() == n + 4
    assert loc["observation"].shape == var["observation"].shape == (3,)


def test_prioritized_sampler_accessors():
    from aeon_trl.data.prioritized import PPOPrioritizedSampler  # torchrl's own cannot be built without its C++ trees
    sampler = PPOPrioritizedSampler(10, alpha=0.6, beta=0.4)
    assert _compat.sampler_capacity_and_device(sampler) == (10, None)
    _compat.install_segment_trees(sampler, "sum", "min")
    assert (sampler._sum_tree, sampler._min_tree, sampler._max_priority) == ("sum", "min", (None, None))
    assert _compat.segment_tree_extension_loaded() in (True, False)


def test_unchecked_tensordict_is_a_tensordict():
    td = _compat.unchecked_tensordict({"a": torch.zeros(3, 1)}, batch_size=torch.Size([3]), device=None)
    assert isinstance(td, TensorDict) and td.batch_size == (3,) and td["a"].shape == (3, 1)


@pytest.mark.skipif(importlib.util.find_spec("envpool") is None, reason="envpool is Linux-only")
def test_envpool_accessors():
    import envpool
    import numpy as np
    pool = envpool.make("Pendulum-v1", env_type="gymnasium", num_envs=2, batch_size=2, seed=0)
    try:
        action_keys, state_keys = _compat.envpool_raw_layout(pool)
        assert {"obs", "reward", "done", "trunc"} <= set(state_keys)
        send, recv = _compat.envpool_raw_step(pool)  # the layout EnvPoolEnv's fast path is written for
        assert action_keys == ["env_id", "players.env_id", "action"]
        dtype = np.dtype(_compat.envpool_action_dtype(pool))
        pool.reset()
        ids = np.arange(2, dtype=np.int32)
        send([ids, ids.copy(), np.zeros((2, 1), dtype=dtype)])
        raw = recv()
        assert raw[state_keys.index("obs")].shape == (2, 3)
        assert "elapsed_step" in _compat.envpool_info(pool, raw, False)
    finally:
        pool.close()


# ---- the from_any fast path ---------------------------------------------------------------------------------
@pytest.fixture
def fastpath():
    was = _compat.from_any_fastpath_enabled()
    _compat.enable_from_any_fastpath()
    yield
    if not was:
        _compat.disable_from_any_fastpath()


def test_importing_aeon_trl_patches_nothing():
    code = ("import tensordict; f = tensordict.TensorDict.from_any.__func__; import aeon_trl; "
            "assert tensordict.TensorDict.from_any.__func__ is f")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_plain_tensors_come_back_as_they_are_other_inputs_take_tensordicts_path(fastpath):
    t = torch.arange(3.0)
    assert TensorDict.from_any(t) is t is _compat._stock_from_any(TensorDict, t)
    td = TensorDict.from_any({"a": torch.ones(2, 3)}, auto_batch_size=True)
    assert isinstance(td, TensorDict) and td.batch_size == torch.Size([2, 3])


def test_a_module_call_searches_no_files(monkeypatch, fastpath):
    # tensordict 0.14 looks for pandas on every TensorDictModule output; the shortcut must make that go away
    searches = []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: searches.append(name) or real(name, *a))
    module = TensorDictModule(torch.nn.Linear(3, 2), in_keys=["x"], out_keys=["y"])
    out = module(TensorDict({"x": torch.ones(4, 3)}, batch_size=[4]))
    assert out["y"].shape == (4, 2) and searches == []


def test_the_trainer_opts_in():
    from aeon_trl.trainer import Trainer
    assert "_compat.enable_from_any_fastpath()" in inspect.getsource(Trainer.__init__)
