"""``make_env``: a batched TorchRL env (``[num_envs]``) with the transform stack PPO needs.

One TorchRL step carries ``num_envs`` MuJoCo steps, so TorchRL's ~1 ms per-step overhead is paid
once per batch (see benchmarks/RESULTS.md). The base env is envpool's C++ thread pool when it ships
the id, else (``env_backend=parallel``) ``W`` worker processes (torchrl ``ParallelEnv``, shared-memory buffers),
each stepping ``num_envs / W`` gymnasium envs in-process (a ``SyncVectorEnv`` in one ``GymWrapper``); ``W`` is
``env_threads`` (default: the CPUs this process may use), shrunk to fit the memory there is (a probe measures
one env), and never one process per env. gymnasium's ``AsyncVectorEnv`` and a ``SerialEnv`` of single ``GymEnv``s
are there to compare (``aeon-benchmark throughput`` measures every path).

Any gymnasium id works, including gymnasium's ``module:EnvId`` (imports ``module``, which registers ``EnvId``);
``env_imports`` are imported first (here and in every worker) and ``env_kwargs`` go to ``gymnasium.make``.
Dict (nested) observations are flattened into one ``observation`` vector (leaves in sorted key order,
``observation_layout``, kept in checkpoints); image observations are refused.

On top, in this order: the flattening of ``[W, k]`` worker batches to ``[num_envs]`` (its own inner
``TransformedEnv``: a reshape inside a ``Compose`` would hand the other transforms a mis-shaped input), the
flattening of Dict observations, the curriculum's reward (``curriculum=speed``) -> ``RewardSum`` (raw episode return, for logging) ->
``StepCounter`` (episode lengths, with ``dynamic_batch``) -> ``SafeVecNorm`` on observations + clip ->
``ReturnScaling`` on rewards -> action clipping to the env's (per-dimension) bounds (inverse transform: the
policy's unclipped Gaussian sample is what the loss sees, the env gets the clipped one).
"""
from __future__ import annotations

import ctypes
import functools
import gc
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torchrl.envs import (BatchSizeTransform, CatTensors, ClipTransform, Compose, DoubleToFloat, DTypeCastTransform,
                          EnvBase, FlattenObservation, GymEnv, GymWrapper, RewardSum, SerialEnv,
                          StepCounter, Transform, TransformedEnv)

from aeon_trl import _compat
from aeon_trl._util import did_you_mean
from aeon_trl.config import Config, ConfigError
from aeon_trl.transforms.curriculum import make_curriculum_transform
from aeon_trl.transforms.obs_norm import ObsNorm, SafeVecNorm  # noqa: F401 (ObsNorm: re-exported)
from aeon_trl.transforms.reward import ReturnScaling


# ---- ids, modules, kwargs ----------------------------------------------------------------------------------
_NOTICED: set[str] = set()


def notice(message: str, once: bool = False) -> None:
    """A one-line notice on stderr (what the env side chose and why): visible in a terminal and a SLURM log.
    ``once``: not again in this process (a choice every evaluation env repeats)."""
    if once and message in _NOTICED:
        return
    _NOTICED.add(message)
    print(f"aeon_trl: {message}", file=sys.stderr, flush=True)


def _import_module(module: str, what: str) -> None:
    """Import ``module`` (as ``python -m`` would: with the working directory on the path as a last resort, so
    ``benchmarks.user_envs.mycheetah:MyCheetah-v0`` works from a checkout under a console script too)."""
    try:
        importlib.import_module(module)
        return
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = module.split(".")[0]
        if exc.name not in (top, module) or cwd in sys.path or not (
                os.path.isdir(os.path.join(cwd, top)) or os.path.isfile(os.path.join(cwd, top + ".py"))):
            error = exc
        else:
            sys.path.append(cwd)
            try:
                importlib.import_module(module)
                return
            except Exception as retry:  # noqa: BLE001 - reported with the module's name below
                error = retry
    except Exception as exc:  # noqa: BLE001 - any error while importing the user's module
        error = exc
    raise ConfigError(f"the env module '{module}' ({what}) does not import: {type(error).__name__}: {error}. "
                      "Check the module name and that it is importable here (run from the folder that holds it, "
                      "or put that folder on PYTHONPATH).") from error


def import_env_modules(env_id: str, imports: Sequence[str] = ()) -> str:
    """Import ``imports`` and the ``module`` of a ``module:EnvId`` id; returns the registered id (``EnvId``)."""
    for module in imports:
        _import_module(module, "env.imports")
    if ":" not in env_id:
        return env_id
    module, name = env_id.split(":", 1)
    _import_module(module, f"from env_id '{env_id}'")
    return name


def env_spec(env_id: str, imports: Sequence[str] = ()) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` (a plain or ``module:EnvId`` id), importing what registers it."""
    name = import_env_modules(env_id, imports)
    try:
        return gym.spec(name)
    except gym.error.Error:
        pass
    hint = did_you_mean(name, gym.envs.registry)
    if ":" in env_id or imports:
        modules = [env_id.split(":", 1)[0]] if ":" in env_id else []
        modules += list(imports)
        theirs = sorted(i for i, s in gym.envs.registry.items()
                        if isinstance(s.entry_point, str) and s.entry_point.split(":")[0] in modules)
        listed = f" Ids registered from it: {', '.join(theirs)}." if theirs else \
            " It registers none (call gymnasium.register(id=..., entry_point=...) at its top level)."
        raise ConfigError(f"unknown env id '{name}': {', '.join(repr(m) for m in modules)} imported, but no env "
                          f"'{name}' is registered.{hint}{listed}")
    raise ConfigError(f"unknown env id '{env_id}'.{hint} Any gymnasium id with a Box action space works, e.g. "
                      "HalfCheetah-v5, Hopper-v5, Pendulum-v1, or your own as module:EnvId (the module registers it).")


def make_gym_env(env_id: str, imports: Sequence[str] = (), kwargs: dict | None = None) -> gym.Env:
    """One gymnasium env as ``torchrl.envs.GymEnv`` makes it (env checker off); also what each env worker calls,
    so ``imports`` are imported there too."""
    import_env_modules(env_id, imports)
    return gym.make(env_id, disable_env_checker=True, **(kwargs or {}))


def _make_kwargs(cfg: Config) -> dict:
    kwargs = dict(cfg.env.env_kwargs)
    if cfg.env.max_episode_steps:
        kwargs["max_episode_steps"] = cfg.env.max_episode_steps
    return kwargs


def _bad_kwargs_error(env_id: str, spec, kwargs: dict, exc: TypeError) -> ConfigError:
    try:
        creator = gym.envs.registration.load_env_creator(spec.entry_point) \
            if isinstance(spec.entry_point, str) else spec.entry_point
        takes = [p for p in inspect.signature(creator).parameters if p not in ("self", "args", "kwargs")]
    except (ValueError, TypeError, ImportError, AttributeError):
        takes = []
    listed = f" It takes: {', '.join(takes)}." if takes else ""
    return ConfigError(f"env '{env_id}' does not take the keyword argument(s) given in env.kwargs "
                       f"({', '.join(sorted(kwargs))}): {exc}.{listed} Fix or remove env.kwargs.<name>.")


@dataclass
class EnvProbe:
    """What one env made in this process tells before any worker starts."""
    action_space: gym.spaces.Box
    observation_space: gym.Space
    rss_mb: float  # this process's RSS growth while making and resetting it (an upper bound on one env's memory)


def probe_env(env_id: str, imports: Sequence[str] = (), kwargs: dict | None = None) -> EnvProbe:
    """Make one env: refuse unknown ids (with a close match), modules that do not import, kwargs the env does not
    take, discrete actions and image observations; measure its memory."""
    kwargs = dict(kwargs or {})
    spec = env_spec(env_id, imports)
    before = rss_mb()
    try:
        env = make_gym_env(env_id, imports, kwargs)
    except TypeError as exc:
        if kwargs and "argument" in str(exc):
            raise _bad_kwargs_error(env_id, spec, kwargs, exc) from None
        raise
    try:
        env.reset(seed=0)
        used = max(rss_mb() - before, 0.0)
        action_space, observation_space = env.action_space, env.observation_space
    finally:
        env.close()
    if not isinstance(action_space, gym.spaces.Box):
        raise ConfigError(f"env '{env_id}' has a {type(action_space).__name__} action space: aeon_trl's PPO is for "
                          "continuous actions only (a Box action space).")
    check_observation_space(observation_space, env_id)
    return EnvProbe(action_space, observation_space, used)


def check_env_id(env_id: str, imports: Sequence[str] = (), kwargs: dict | None = None) -> gym.spaces.Box:
    """Refuse unknown ids (with a close match) and discrete-action envs; return the action space."""
    return probe_env(env_id, imports, kwargs).action_space


def _leaves(space: gym.Space, prefix: str = ""):
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            yield from _leaves(sub, f"{prefix}{key}/")
    elif isinstance(space, gym.spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            yield from _leaves(sub, f"{prefix}{i}/")
    else:
        yield prefix.rstrip("/") or "observation", space


def check_observation_space(space: gym.Space, env_id: str) -> None:
    """Image observations (a uint8 Box, or one with 3+ dims) are not supported yet: no conv encoder."""
    for key, leaf in _leaves(space):
        shape, dtype = getattr(leaf, "shape", None) or (), getattr(leaf, "dtype", None)
        if isinstance(leaf, gym.spaces.Box) and (dtype == np.uint8 or len(shape) >= 3):
            raise ConfigError(
                f"env '{env_id}' has image observations ('{key}': Box {tuple(shape)} {dtype}), which aeon_trl does "
                "not support yet (its networks are MLPs over a state vector). Give the policy a state vector "
                "instead: a gymnasium ObservationWrapper registered with the env that returns low-dimensional "
                "features, or the env's state-based variant.")


# ---- choosing the path -------------------------------------------------------------------------------------
def resolve_backend(cfg: Config) -> str:
    if cfg.env.env_backend != "auto":
        return cfg.env.env_backend
    from aeon_trl.envpool_env import envpool_supports, envpool_takes
    if envpool_supports(cfg.env.env_id) and not cfg.env.env_imports:
        refused = sorted(set(cfg.env.env_kwargs) - envpool_takes(cfg.env.env_id))
        if not refused:
            return "envpool"
        notice(f"envpool's {cfg.env.env_id} does not take env.kwargs {', '.join(refused)}: using gymnasium's env "
               "in worker processes (env_backend=parallel) instead", once=True)
        return "parallel"
    if importlib.util.find_spec("envpool") is None and cfg.env.env_id in _ENVPOOL_IDS_ELSEWHERE:
        warnings.warn("envpool is not installed on this platform: env_backend=auto falls back to gymnasium's "
                      "envs in worker processes (several times slower; pip install envpool where it is available)",
                      stacklevel=2)
    return "parallel"


_ENVPOOL_IDS_ELSEWHERE = frozenset(f"{n}-v5" for n in (
    "Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum", "InvertedPendulum",
    "Pusher", "Reacher", "Swimmer", "Walker2d"))


def available_cpus() -> int:
    """The CPUs this process may use: SLURM's allocation (``--cpus-per-task``), else the affinity mask
    (cgroups, taskset), not the machine's core count that ``os.cpu_count()`` reports inside a job."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---- memory ------------------------------------------------------------------------------------------------
# A forked worker's own memory before it makes its envs (torchrl's worker loop, its buffers, copy-on-write
# pages it dirties), measured at ~115 MB (PSS) here; rounded up for the estimate.
WORKER_OVERHEAD_MB = 150.0
MIN_ENV_MB = 2.0  # an env whose probe measured less (pages already mapped) is still counted at this
MEMORY_SHARE = 0.8  # of the available memory, the most the env side may plan to use


def _proc_kb(path: str, field: str) -> float | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (VmRSS), MB; 0 where /proc is not there."""
    return (_proc_kb(f"/proc/{pid}/status", "VmRSS") or 0.0) / 1024


def pss_mb(pid: int | str = "self") -> float:
    """A process's proportional set size (shared pages split between their users), MB: summed over a process tree
    it does not count the pages forked workers share with their parent twice, as RSS does."""
    pss = _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss")
    return pss / 1024 if pss is not None else rss_mb(pid)


def available_memory_mb() -> float:
    """What this process may still allocate, MB: /proc/meminfo's MemAvailable, capped by a cgroup (v2, v1) limit
    (SLURM, containers)."""
    avail = (_proc_kb("/proc/meminfo", "MemAvailable") or float("inf")) / 1024
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = open(limit_path).read().strip(), open(usage_path).read().strip()
        except OSError:
            continue
        if limit.isdigit() and int(limit) < 2**60:
            avail = min(avail, (int(limit) - int(usage)) / 2**20)
    return avail


def child_pids(pid: int | None = None) -> list[int]:
    """The live child processes of ``pid`` (default: this one), from /proc."""
    pid = os.getpid() if pid is None else pid
    out = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


@dataclass
class WorkerPlan:
    workers: int  # 1: the envs are stepped in this process
    envs_per_worker: int
    estimated_mb: float
    available_mb: float
    notes: tuple[str, ...] = ()


def plan_workers(num_envs: int, requested: int, env_mb: float, available_mb: float) -> WorkerPlan:
    """How many worker processes step ``num_envs`` envs: ``requested`` (the CPUs), lowered to a divisor of
    ``num_envs`` (every worker steps the same number: torchrl stacks them into ``[W, k]``; the config's
    num_envs stays what the batch, the checkpoints and resume are built on) and until the estimate fits in
    ``MEMORY_SHARE`` of the available memory. Refuses when even one process cannot hold the envs."""
    env_mb = max(env_mb, MIN_ENV_MB)
    notes = []
    workers = max(1, min(requested, num_envs))
    divisor = max(w for w in range(1, workers + 1) if num_envs % w == 0)
    if divisor < workers:
        near = sorted({num_envs - num_envs % workers, num_envs - num_envs % workers + workers} - {0})
        notes.append(f"num_envs={num_envs} does not divide into {workers} workers: using {divisor} worker(s) of "
                     f"{num_envs // divisor} envs (num_envs={' or '.join(map(str, near))} would use all {workers})")
        workers = divisor
    estimate = lambda w: (w * WORKER_OVERHEAD_MB if w > 1 else 0.0) + num_envs * env_mb  # noqa: E731
    budget = MEMORY_SHARE * available_mb
    if estimate(1) > budget:
        raise ConfigError(f"num_envs={num_envs} envs need ~{estimate(1) / 1024:.1f} GB ({env_mb:.0f} MB each, "
                          f"measured), {available_mb / 1024:.1f} GB are available: lower num_envs")
    if estimate(workers) > budget:
        fits = max(w for w in range(1, workers + 1) if num_envs % w == 0 and estimate(w) <= budget)
        notes.append(f"{workers} workers would need ~{estimate(workers) / 1024:.1f} GB of the "
                     f"{available_mb / 1024:.1f} GB available: using {fits}")
        workers = fits
    return WorkerPlan(workers, num_envs // workers, estimate(workers), available_mb, tuple(notes))


# ---- the vector path ---------------------------------------------------------------------------------------
class VectorGymEnv(GymWrapper):
    """``k`` gymnasium envs stepped in this process: a ``SyncVectorEnv`` with gymnasium's autoreset off (torchrl
    resets done envs itself, through ``reset_mask``), batch ``[k]``.

    ``set_seed(s)`` seeds env ``i`` with the ``i``-th link of torchrl's seed chain from ``s`` and returns the next
    link, as ``SerialEnv`` seeds ``k`` single ``GymEnv``s: the same seed gives the same transitions, and a
    ``ParallelEnv`` of such workers continues the chain across workers (it hands each the previous one's return).
    """

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        if seed is None:
            return None
        seeds = _compat.seed_chain(seed, self.batch_size[0] + 1)
        self.reset(seed=seeds[:-1])
        return seed if static_seed else seeds[-1]


def _die_with_parent() -> None:
    """Linux: this (worker) process is killed when its parent dies, however it dies (SIGTERM, SIGKILL, a crash):
    no orphaned env workers. The signal comes when the parent's forking *thread* exits, so build envs in a
    thread that lives as long as they do (the main thread)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def make_vector_worker(make_one: Callable[[], gym.Env], num_envs: int) -> VectorGymEnv:
    """One worker's env (called in the worker process): ``num_envs`` envs from ``make_one`` in one wrapper."""
    if multiprocessing_parent() is not None:
        _die_with_parent()
    venv = gym.vector.SyncVectorEnv([make_one] * num_envs, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    return VectorGymEnv(venv)


def multiprocessing_parent():
    import multiprocessing
    return multiprocessing.parent_process()


def flatten_worker_batch(td):
    """``[W, k] -> [W * k]``: worker w's env j is env ``w * k + j`` of the batch."""
    return td.flatten(0, 1)


class FlattenWorkers(BatchSizeTransform):
    """A ``ParallelEnv``'s ``[W, k]`` batch as ``[W * k]``; a reset's input (its ``_reset`` mask) is reshaped back
    to ``[W, k]`` too (``enable_inv_on_reset``), else a partial reset would index the workers by env."""

    enable_inv_on_reset = True

    def __init__(self):
        super().__init__(reshape_fn=flatten_worker_batch)


def vector_env(make_one: Callable[[], gym.Env], num_envs: int, workers: int, seed: int, env_mb: float,
               label: str) -> EnvBase:
    """``num_envs`` envs from ``make_one``: ``workers`` processes (torchrl ``ParallelEnv``) of ``num_envs/workers``
    envs each, batch flattened to ``[num_envs]``; one worker steps them in this process. Reports the layout and
    its memory on one line."""
    plan = plan_workers(num_envs, workers, env_mb, available_memory_mb())
    for note in plan.notes:
        notice(note)
    if plan.workers == 1:
        env = make_vector_worker(make_one, num_envs)
        env.set_seed(seed)
        notice(f"{label}: {num_envs} envs in this process (estimated {plan.estimated_mb:.0f} MB)")
        return env
    before = set(child_pids())
    # device="cpu": the collector's .to("cpu") is then a no-op, not a re-seed (torchrl re-seeds a ParallelEnv
    # moved to another device). daemon: at exit without close(), multiprocessing terminates the workers instead
    # of waiting forever for them (torchrl's default, non-daemonic, hangs the interpreter's exit).
    parallel = _compat.PollingParallelEnv(
        plan.workers, functools.partial(make_vector_worker, make_one, plan.envs_per_worker), mp_start_method="fork",
        device="cpu", daemon=True, num_threads=torch.get_num_threads())  # the trainer's torch_threads, not torchrl's
    # The workers are forks: gc.freeze() keeps them from collecting what they inherit (torchrl's worker collects
    # at close). Finalizers of the parent's garbage are not safe in a fork: after envpool, gymnasium-subprocess
    # and curriculum envs were made and dropped in one process (the test suite), every worker segfaulted at close.
    # It also spares copy-on-write pages.
    gc.freeze()
    try:
        parallel.set_seed(seed)  # starts the workers
        measured = sum(pss_mb(pid) for pid in set(child_pids()) - before)
    except BaseException:
        parallel.close(raise_if_closed=False)
        raise
    finally:
        gc.unfreeze()
    notice(f"{label}: {plan.workers} worker processes x {plan.envs_per_worker} envs (memory: estimated "
           f"{plan.estimated_mb / 1024:.2f} GB, measured {measured / 1024:.2f} GB PSS; "
           f"{plan.available_mb / 1024:.1f} GB available)")
    return TransformedEnv(parallel, FlattenWorkers(), auto_unwrap=False)


def make_base_env(cfg: Config, num_envs: int, seed: int, serial: bool = False) -> EnvBase:
    """``serial`` steps gymnasium envs in this process (``SerialEnv``) instead of worker processes, whose start-up
    dominates short uses such as evaluation (envpool, when it is the backend, is used either way)."""
    env_id, imports = cfg.env.env_id, tuple(cfg.env.env_imports)
    probe = probe_env(env_id, imports, cfg.env.env_kwargs)
    backend = resolve_backend(cfg)
    if backend == "envpool":
        from aeon_trl.envpool_env import EnvPoolEnv, envpool_takes
        refused = sorted(set(cfg.env.env_kwargs) - envpool_takes(env_id))
        if refused:
            raise ConfigError(f"envpool's {env_id} does not take env.kwargs {', '.join(refused)}: use "
                              "env_backend=auto (falls back to gymnasium's env) or drop them")
        threads = cfg.env.env_threads or available_cpus()
        return EnvPoolEnv(env_id, num_envs, seed=seed, num_threads=min(threads, num_envs),
                          max_episode_steps=cfg.env.max_episode_steps or None, env_kwargs=cfg.env.env_kwargs)
    kwargs = _make_kwargs(cfg)
    backend = "serial" if serial else backend
    if backend in ("parallel", "vector"):
        make_one = functools.partial(make_gym_env, env_id, imports, kwargs)
        return vector_env(make_one, num_envs, cfg.env.env_threads or available_cpus(), seed, probe.rss_mb, env_id)
    if env_id.startswith("aeon/"):  # registered on `import aeon_trl`: gymnasium imports it first in vector-env workers
        env_id = f"aeon_trl:{env_id}"
    if imports:
        make_one = lambda: GymWrapper(make_gym_env(env_id, imports, kwargs))  # noqa: E731
    else:
        make_one = functools.partial(GymEnv, env_id, **kwargs)
    if backend == "serial":
        env = SerialEnv(num_envs, make_one)
    else:
        env = GymEnv(env_id, num_envs=num_envs, **kwargs) if num_envs > 1 else GymEnv(env_id, **kwargs)
    env.set_seed(seed)
    return env


# ---- the transform stack -----------------------------------------------------------------------------------
def _key_name(key) -> str:
    return "/".join(key) if isinstance(key, tuple) else key


def observation_layout(env: EnvBase) -> list[list]:
    """``[[key, size], ...]``: the observation leaves in the order the ``observation`` vector concatenates them
    (one ``["observation", dim]`` for a Box observation). Kept in checkpoints: a checkpoint refuses an env whose
    layout differs."""
    for t in getattr(env, "transform", ()):
        if isinstance(t, FlattenDictObservation):
            return [list(entry) for entry in t.layout]
    batch = len(env.batch_size)
    return [["observation", int(np.prod(env.observation_spec["observation"].shape[batch:]))]]


class FlattenDictObservation(Compose):
    """Dict/nested observations -> one float32 ``observation`` vector: each leaf cast to float32 and flattened,
    then ``CatTensors`` in sorted key order (so the vector does not depend on the order the env lists its keys).
    ``layout`` is ``[(key, size), ...]`` in that order."""

    def __init__(self, observation_spec, batch_dims: int):
        leaves = sorted(observation_spec.keys(True, True), key=_key_name)
        transforms, layout = [], []
        for key in leaves:
            spec = observation_spec[key]
            shape = spec.shape[batch_dims:]
            if spec.dtype != torch.float32:
                transforms.append(DTypeCastTransform(spec.dtype, torch.float32, in_keys=[key]))
            if len(shape) > 1:
                transforms.append(FlattenObservation(-len(shape), -1, in_keys=[key]))
            layout.append((_key_name(key), int(np.prod(shape)) if len(shape) else 1))
        transforms.append(CatTensors(in_keys=leaves, out_key="observation", del_keys=True, unsqueeze_if_oor=True,
                                     sort=False))
        super().__init__(*transforms)
        self.layout = tuple(layout)


def _needs_flattening(observation_spec, batch_dims: int) -> bool:
    """A Dict observation (no ``observation`` vector), or a multi-dimensional one. Other keys next to an
    ``observation`` vector are the env's info entries a transform reads (the speed curriculum's ``x_velocity``),
    not parts of the observation."""
    keys = list(observation_spec.keys(True, True))
    return "observation" not in keys or len(observation_spec["observation"].shape[batch_dims:]) != 1


class ActionClip(Transform):
    """Clamps the action the env gets to its per-dimension ``[low, high]`` (an inverse transform: the loss sees
    the policy's unclipped sample). torchrl's ``ClipTransform`` takes scalar bounds only."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        super().__init__(in_keys=[], out_keys=[], in_keys_inv=["action"], out_keys_inv=["action"])
        self.register_buffer("low", low.clone())
        self.register_buffer("high", high.clone())

    def _inv_apply_transform(self, action: torch.Tensor) -> torch.Tensor:
        return action.clamp(self.low, self.high)


def action_bounds(env: EnvBase) -> tuple[torch.Tensor, torch.Tensor]:
    """The env's action bounds ``[act_dim]`` (the same for every env of the batch)."""
    space = env.action_spec.space
    dims = env.action_spec.shape[len(env.batch_size):]
    low, high = space.low.expand(*env.batch_size, *dims), space.high.expand(*env.batch_size, *dims)
    return low.reshape(-1, *dims)[0], high.reshape(-1, *dims)[0]


def make_env(cfg: Config, num_envs: int | None = None, seed: int | None = None,
             base_env: EnvBase | None = None) -> TransformedEnv:
    """The training env stack. ``base_env`` lets a user bring their own TorchRL env."""
    num_envs = num_envs or cfg.env.num_envs
    seed = cfg.train.seed if seed is None else seed
    base = base_env if base_env is not None else make_base_env(cfg, num_envs, seed)
    try:
        return _transformed(cfg, base)
    except BaseException:
        if base_env is None:
            base.close(raise_if_closed=False)
        raise


def _transformed(cfg: Config, base: EnvBase) -> TransformedEnv:
    transforms = []
    batch_dims = len(base.batch_size)
    if _needs_flattening(base.observation_spec, batch_dims):
        transforms.append(FlattenDictObservation(base.observation_spec, batch_dims))
    # The curriculum rewrites the reward from the raw observation: before RewardSum (which then logs the
    # curriculum's return) and before normalization. StepCounter gives episode lengths to dynamic batch sizing.
    curriculum = make_curriculum_transform(cfg.shaping, cfg.env.env_id)
    transforms += ([curriculum] if curriculum else []) + [RewardSum()]
    if cfg.shaping.dynamic_batch:
        transforms.append(StepCounter())
    if not transforms[:1] or not isinstance(transforms[0], FlattenDictObservation):
        if base.observation_spec["observation"].dtype == torch.float64:
            transforms.append(DoubleToFloat(in_keys=["observation"]))
    if cfg.env.norm_obs:
        # decay=1.0 (all-time mean/var, as SB3's VecNormalize): with decay < 1, torchrl 0.14.1's bias
        # correction makes the early scale ~sqrt(E[x^2]) instead of the std (67x off for Hopper's height).
        transforms += [SafeVecNorm(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True),
                       ClipTransform(in_keys=["observation"], low=-cfg.env.obs_clip, high=cfg.env.obs_clip)]
    if cfg.env.norm_reward:
        transforms.append(ReturnScaling(gamma=cfg.ppo.gamma))
    low, high = action_bounds(base)
    if torch.all(low == low.flatten()[0]) and torch.all(high == high.flatten()[0]):
        transforms.append(ClipTransform(in_keys_inv=["action"], low=low.flatten()[0].item(),
                                        high=high.flatten()[0].item()))
    else:
        transforms.append(ActionClip(low, high))
    nested = isinstance(base, TransformedEnv) and isinstance(base.transform, FlattenWorkers)
    return TransformedEnv(base, Compose(*transforms), auto_unwrap=not nested)

def env_dims(env: EnvBase) -> tuple[int, int]:
    return int(np.prod(env.observation_spec["observation"].shape[len(env.batch_size):])), \
        int(np.prod(env.action_spec.shape[len(env.batch_size):]))


def episode_limit(cfg: Config) -> int:
    """The episode length limit of the config's env: ``max_episode_steps``, else the id's registered limit (1000
    for an env given as an object, not registered under its config's env_id)."""
    if cfg.env.max_episode_steps:
        return cfg.env.max_episode_steps
    try:
        return env_spec(cfg.env.env_id, cfg.env.env_imports).max_episode_steps or 1000
    except ConfigError:
        return 1000
