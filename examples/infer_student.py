"""Run a student exported by aeon-distill with torch / onnx only: this file imports nothing from aeon_trl.

    python examples/infer_student.py runs/x/student-32x32                    # actions for a zero observation
    python examples/infer_student.py runs/x/student-32x32 --obs obs.npy      # for raw observations [B, obs_dim]
    python examples/infer_student.py runs/x/student-32x32 --episodes 3       # play the env (gymnasium)

The exported graphs take RAW observations (the teacher's normalization is inside) and return clipped actions.
Prints one JSON line: {"pt2": actions, "onnx": actions or null, "returns": [...]}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def load_onnx(path: Path):
    """onnxruntime when installed, else onnx's pure-numpy reference evaluator (slow, but needs no runtime)."""
    try:
        import onnxruntime
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except ImportError:
        from onnx.reference import ReferenceEvaluator
        session = ReferenceEvaluator(str(path))
    return lambda obs: session.run(None, {"observation": obs})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--obs", type=Path, help=".npy file of raw observations [obs_dim] or [B, obs_dim]")
    parser.add_argument("--episodes", type=int, default=0, help="also play this many episodes of the env")
    args = parser.parse_args()
    meta = json.loads((args.export_dir / "student.json").read_text())
    policy = torch.export.load(args.export_dir / "student.pt2").module()
    obs = np.load(args.obs) if args.obs else np.zeros(meta["obs_dim"])
    obs = np.atleast_2d(obs).astype(np.float32)
    with torch.no_grad():
        out = {"pt2": policy(torch.from_numpy(obs)).numpy().tolist(), "onnx": None, "returns": []}
    if meta["files"].get("onnx"):
        out["onnx"] = load_onnx(args.export_dir / meta["files"]["onnx"])(obs).tolist()
    if args.episodes:
        import gymnasium as gym
        env = gym.make(meta["env_id"])
        for episode in range(args.episodes):
            o, _ = env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                with torch.no_grad():
                    action = policy(torch.as_tensor(o, dtype=torch.float32)[None])[0].numpy()
                o, reward, terminated, truncated, _ = env.step(action)
                total, done = total + float(reward), terminated or truncated
            out["returns"].append(total)
        env.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
