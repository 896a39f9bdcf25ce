"""Watch and score a trained agent: evaluation episodes on the plain gymnasium env, with videos.

    from aeon_trl.evaluation import evaluate_run
    record = evaluate_run("runs/my-run", episodes=10, video=True)   # -> runs/my-run/eval/evaluation.json, episode-0.mp4

The agent acts through ``AdvancedPPO.get_action`` (raw observations in; the checkpoint's normalization statistics
are applied inside, frozen), on ``gymnasium.make(env_id, render_mode="rgb_array")`` envs with the run's episode
limit, episode ``i`` reset with seed ``seed + i``. All episodes step in lockstep, one batched policy call per step.

Frames: one per step, of the state the step led to (the reset state is not a frame), so a video has exactly as many
frames as its episode has steps, and its last frame shows how the episode ended.

The score is the gymnasium env's own reward. That is what the run's final evaluation (``results.json``) measures too,
except for ``curriculum=speed`` runs, whose training evaluation scores the curriculum's speed reward.

``PeriodicEvaluator`` is the trainer's cheap evaluation during training (``eval_every``): these same plain
gymnasium envs and seeds, kept between calls, instead of a TorchRL env stack rebuilt on every call.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from aeon_trl import render
from aeon_trl._util import eval_seed
from aeon_trl.checkpoint import CheckpointError
from aeon_trl.envs import episode_limit
from aeon_trl.normalize import standardize

CHECKPOINT = "checkpoint.pt"
DEFAULT_SIZE = (480, 480)  # gymnasium's MuJoCo default (width, height)


class Agent(Protocol):
    config: "object"

    def get_action(self, state: np.ndarray, deterministic: bool = False) -> np.ndarray: ...


@dataclass
class Evaluation:
    """Per-episode returns and lengths; ``frames[i]`` (``[T_i, H, W, 3]`` uint8) for the first rendered episodes."""
    env_id: str
    seed: int
    deterministic: bool
    returns: list[float]
    lengths: list[int]
    frames: list[np.ndarray] = field(default_factory=list)
    fps: float = 30.0
    render_message: str = ""  # why there are fewer rendered episodes than asked for ("" when none are missing)

    def record(self) -> dict:
        """The JSON-ready summary (no frames)."""
        return {"env_id": self.env_id, "episodes": len(self.returns), "deterministic": self.deterministic,
                "seed": self.seed, "mean": float(np.mean(self.returns)), "std": float(np.std(self.returns)),
                "min": float(np.min(self.returns)), "max": float(np.max(self.returns)),
                "mean_length": float(np.mean(self.lengths)), "returns": self.returns, "lengths": self.lengths}


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file, else the run folder's ``checkpoint.pt``; a clear error if neither exists."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise CheckpointError(f"{path} is a folder without a {CHECKPOINT}: pass a run folder written by aeon-train "
                                  "or a checkpoint file")
        return path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: pass a run folder (with {CHECKPOINT}) or a checkpoint file")
    return path


def evaluate_agent(agent: Agent, episodes: int = 10, deterministic: bool = True, seed: int | None = None,
                   render_episodes: int = 0, size: tuple[int, int] = DEFAULT_SIZE) -> Evaluation:
    """Play ``episodes`` episodes with ``agent`` on fresh gymnasium envs; render the first ``render_episodes``.

    Rendering needs an OpenGL backend (``render.select_gl_backend``); without one the episodes are still played and
    scored, and ``render_message`` says why there are no frames."""
    import gymnasium as gym
    import torch

    cfg = agent.config
    env_id = cfg.env.env_id
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if env_id not in gym.registry:
        raise CheckpointError(f"env id {env_id!r} of this agent is not a registered gymnasium env, so it cannot be "
                              "rebuilt for evaluation")
    seed = eval_seed(cfg.train.seed) if seed is None else seed
    n_render, message = min(render_episodes, episodes), ""
    if n_render:
        choice = render.select_gl_backend()
        if choice.backend is None:
            n_render, message = 0, choice.message
    limit = episode_limit(cfg)
    envs = [_make_env(gym, env_id, limit, size if i < n_render else None) for i in range(episodes)]
    try:
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
        returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
        alive = np.ones(episodes, dtype=bool)
        frames: list[list[np.ndarray]] = [[] for _ in range(n_render)]
        with torch.random.fork_rng(devices=[]):  # stochastic actions: reproducible, and the caller's stream untouched
            torch.manual_seed(seed)
            while alive.any():
                idx = np.flatnonzero(alive)
                actions = agent.get_action(obs[idx], deterministic=deterministic)
                for action, i in zip(actions, idx):
                    obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                    returns[i] += float(reward)
                    lengths[i] += 1
                    if i < len(frames) and frames[i] is not None:
                        try:
                            frames[i].append(np.asarray(envs[i].render(), dtype=np.uint8))
                        except Exception as exc:  # a backend that probed fine can still fail in a real scene
                            frames[i], message = None, f"rendering failed with MUJOCO_GL=" \
                                f"{render.select_gl_backend().backend}: {type(exc).__name__}: {exc}"
                    if terminated or truncated:
                        alive[i] = False
        fps = float(envs[0].metadata.get("render_fps") or 30)
    finally:
        for env in envs:  # closes the GL contexts now, not in __del__ at interpreter exit (OSMesa complains there)
            env.close()
    return Evaluation(env_id, seed, deterministic, returns.tolist(), lengths.tolist(),
                      [np.stack(f) for f in frames if f is not None], fps, message)


def _make_env(gym, env_id: str, limit: int, size: tuple[int, int] | None):
    if size is None:
        return gym.make(env_id, max_episode_steps=limit)
    try:  # MuJoCo envs take the frame size; others (classic control) render at their own size
        env = gym.make(env_id, max_episode_steps=limit, render_mode="rgb_array", width=size[0], height=size[1])
    except TypeError:
        return gym.make(env_id, max_episode_steps=limit, render_mode="rgb_array")
    _follow_the_body(env)
    return env


def _follow_the_body(env) -> None:
    """Make a MuJoCo env's free camera track its body (``trackbodyid``, default the root body 1). gymnasium's
    v5 renderer sets the free camera's type back to "free" on every frame (``camera_id=-1``), so its
    ``trackbodyid`` is never used: HalfCheetah-v5's camera stays put and a trained cheetah leaves the frame within
    a second. With ``camera_id=None`` the renderer keeps the camera type its config sets, here "tracking"."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None or getattr(renderer, "camera_id", None) != -1:
        return  # not MuJoCo, or the env films through a camera of its model (a fixed camera)
    import mujoco
    config = dict(renderer.default_cam_config or {})
    config.setdefault("trackbodyid", 1)
    config["type"] = mujoco.mjtCamera.mjCAMERA_TRACKING
    renderer.default_cam_config, renderer.camera_id = config, None


def write_videos(evaluation: Evaluation, out_dir: str | Path, mp4: bool = True, gif: bool = False,
                 stem: str = "episode") -> list[Path]:
    """``<out_dir>/<stem>-<i>.mp4`` (and ``.gif``) for each rendered episode."""
    paths = []
    for i, frames in enumerate(evaluation.frames):
        for suffix in ((".mp4",) if mp4 else ()) + ((".gif",) if gif else ()):
            paths.append(render.write_video(frames, Path(out_dir) / f"{stem}-{i}{suffix}", evaluation.fps))
    return paths


def record_video(agent: Agent, out_dir: str | Path, seed: int | None = None, deterministic: bool = True,
                 gif: bool = False, size: tuple[int, int] = DEFAULT_SIZE, stem: str = "eval") -> Evaluation:
    """One rendered evaluation episode (aeon-eval's first) written as ``<out_dir>/<stem>.mp4`` (and ``.gif``): the
    video of a run (the training driver's ``eval.mp4``).

    Returns the evaluation (its ``frames`` for TensorBoard, ``render_message`` when nothing could be rendered)."""
    evaluation = evaluate_agent(agent, 1, deterministic, seed, render_episodes=1, size=size)
    for frames in evaluation.frames:
        for suffix in (".mp4",) + ((".gif",) if gif else ()):
            render.write_video(frames, Path(out_dir) / f"{stem}{suffix}", evaluation.fps)
    return evaluation


def default_out_dir(path: str | Path) -> Path:
    """``<run folder>/eval`` for a run folder or a checkpoint inside one."""
    path = Path(path)
    return (path if path.is_dir() else path.parent) / "eval"


def evaluate_run(path: str | Path, episodes: int = 10, deterministic: bool = True, seed: int | None = None,
                 video: bool = False, gif: bool = False, video_episodes: int = 1, out_dir: str | Path | None = None,
                 size: tuple[int, int] = DEFAULT_SIZE) -> dict:
    """Evaluate a run folder or checkpoint: writes ``evaluation.json`` (and videos) to ``out_dir``; returns the record.

    The record holds ``mean``, ``std``, per-episode ``returns`` and ``lengths``, the ``videos`` written and, when
    videos were asked for but none could be rendered, ``video_error`` (the JSON is written all the same)."""
    from aeon_trl.ppo import AdvancedPPO

    checkpoint = resolve_checkpoint(path)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(path)
    agent = AdvancedPPO.from_checkpoint(checkpoint)
    try:
        evaluation = evaluate_agent(agent, episodes, deterministic, seed,
                                    render_episodes=video_episodes if (video or gif) else 0, size=size)
    finally:
        agent.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = write_videos(evaluation, out_dir, mp4=video, gif=gif)
    record = {**evaluation.record(), "checkpoint": str(checkpoint), "videos": [str(p) for p in videos]}
    if (video or gif) and evaluation.render_message:
        record["video_error"] = evaluation.render_message
    if evaluation.frames:
        record["video_frames"] = [len(f) for f in evaluation.frames]
        record["fps"] = evaluation.fps
    (out_dir / "evaluation.json").write_text(json.dumps(record, indent=2))
    return record


class PeriodicEvaluator:
    """Deterministic evaluation episodes during training, cheap enough for 20 of them per run.

    ``Trainer.evaluate`` builds a TorchRL env stack (base env + RewardSum + normalization + clip transforms) on
    every call and rolls it out through TorchRL for the whole episode limit; 20 such evaluations cost far more
    than 5% of a default HalfCheetah run. This one keeps ``episodes`` plain ``gymnasium.make`` envs (built once,
    with the run's episode limit) and steps them in this process with arrays: raw observation -> float32 -> the
    training statistics, frozen (``ObsNorm.export()``) -> the policy's mean (``act``) -> clipped to the action
    bounds; only the envs whose first episode is still running are stepped, and each env's first episode's raw
    return is its score. Per step that is ~50 us of MuJoCo per HalfCheetah env plus ~0.1 ms of policy and Python.

    Not envpool, even where training uses it: a pool of a few envs spends ~0.1 ms per step handing each step to
    its worker threads and back, more than the simulation itself.

    Env ``i`` is reset with ``seed + i`` on every call, as ``evaluate_agent`` (aeon-eval) does: every evaluation
    of a run faces the same starts (the curve's changes are the policy's, not the starts'), a resumed run
    evaluates as the uninterrupted one, and a point of the curve is what aeon-eval would score for the policy of
    that moment. ``Trainer.evaluate`` (the final evaluation) draws its starts from its own env (envpool's RNG, or
    TorchRL's seeding of a ``SerialEnv``): other starts of the same distribution.
    """

    def __init__(self, cfg, episodes: int, seed: int | None = None):
        import gymnasium as gym
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.episodes = episodes
        self.seed = eval_seed(cfg.train.seed) if seed is None else seed
        self.limit = episode_limit(cfg)
        # without the env checker: it only checks the first steps after a reset, every evaluation's
        self.envs = [gym.make(cfg.env.env_id, max_episode_steps=self.limit, disable_env_checker=True)
                     for _ in range(episodes)]

    def evaluate(self, act, obs_norm, low: float, high: float, device=None) -> list[float]:
        """The returns of ``episodes`` deterministic episodes. ``act(normalized obs) -> action`` (the policy's
        mean, unclipped); ``obs_norm``: the training statistics, frozen (``ObsNorm.export()``, a
        ``FrozenObsNorm``), applied here in numpy (float32, the same formula: a fifth of torch's per-call cost on
        one small batch). Draws nothing from torch's or numpy's global generators."""
        import torch
        envs = self.envs
        loc, scale = obs_norm.loc.cpu().numpy(), obs_norm.scale.cpu().numpy()
        obs = np.stack([env.reset(seed=self.seed + i)[0] for i, env in enumerate(envs)])
        returns, alive = np.zeros(len(envs)), list(range(len(envs)))
        with torch.inference_mode():
            for _ in range(self.limit):
                # float32 before the statistics, as DoubleToFloat does in the training env stack
                raw = (obs if len(alive) == len(envs) else obs[alive]).astype(np.float32)
                x = torch.from_numpy(standardize(raw, loc, scale, obs_norm.clip))
                actions = act(x if device is None else x.to(device)).clamp(low, high).cpu().numpy()
                ended = []
                for action, i in zip(actions, alive):
                    obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                    returns[i] += reward
                    if terminated or truncated:
                        ended.append(i)
                if ended:
                    alive = [i for i in alive if i not in ended]
                    if not alive:
                        break
        return returns.tolist()

    def close(self) -> None:
        for env in self.envs:
            env.close()


def default_eval_every(total_timesteps: int, frames_per_batch: int, points: int = 20) -> int:
    """Iterations between periodic evaluations so that a run gets at least ``points`` of them (every iteration when
    it has fewer than ``points`` iterations)."""
    iterations = math.ceil(total_timesteps / frames_per_batch)
    return max(1, iterations // points)
