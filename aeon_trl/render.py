"""Offscreen rendering for MuJoCo videos: pick an OpenGL backend that works here, encode frames as MP4/GIF.

MuJoCo renders offscreen through EGL (Debian: ``libegl1`` with Mesa's ``libgl1-mesa-dri``; a GPU driver's EGL
where there is one) or OSMesa (``libosmesa6``, pure software, slower). A backend that is missing or broken often
fails deep inside a C library, sometimes only at the first frame, so each candidate is tried in a subprocess that
renders one tiny scene; the first that works is written to ``MUJOCO_GL`` and ``PYOPENGL_PLATFORM`` in this
process. gymnasium reads ``MUJOCO_GL`` when an env first renders and PyOpenGL reads ``PYOPENGL_PLATFORM`` when it
is first imported, so the choice holds as long as nothing has rendered in this process yet (``import mujoco``
alone does not fix it: ``aeon_trl`` imports mujoco, and the tests check that a choice made afterwards works).

A ``MUJOCO_GL`` the user set is honoured as it is (it is how one forces a backend, or turns rendering off with
``MUJOCO_GL=disable``): only that one is tried.

This module imports neither mujoco nor OpenGL.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

# The order of preference: EGL is hardware accelerated where a GPU driver provides it and fast in software
# (Mesa's llvmpipe); OSMesa always renders in software.
CANDIDATES = ("egl", "osmesa")
DISABLED = ("disable", "disabled", "off", "false", "0")
INSTALL_HINT = ("install a renderer: `apt-get install -y libegl1 libgl1-mesa-dri` (EGL) or "
                "`apt-get install -y libosmesa6` (OSMesa), or set MUJOCO_GL to a backend that works here")
PROBE_TIMEOUT_S = 60

# Renders a 16 x 16 frame of a one-sphere scene with the backend named in MUJOCO_GL, as gymnasium will.
_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 16, 16)
r.update_scene(d)
frame = r.render()
r.close()
assert frame.shape == (16, 16, 3), frame.shape
print("rendered")
"""


class RenderUnavailable(RuntimeError):
    """No OpenGL backend can render MuJoCo offscreen here; the message says what was tried and how to fix it."""


@dataclass
class GLChoice:
    backend: str | None  # the MUJOCO_GL value that renders, or None
    tried: dict[str, str] = field(default_factory=dict)  # backend -> why it failed
    user_set: bool = False  # MUJOCO_GL came from the environment

    @property
    def message(self) -> str:
        if self.backend is not None:
            return f"rendering with MUJOCO_GL={self.backend}"
        if self.user_set and not self.tried:
            return f"rendering is turned off (MUJOCO_GL={os.environ.get('MUJOCO_GL')})"
        why = "; ".join(f"{name}: {reason}" for name, reason in self.tried.items())
        return f"no OpenGL backend can render MuJoCo offscreen here ({why}); {INSTALL_HINT}"


_choice: GLChoice | None = None


def probe(backend: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if MuJoCo renders with ``MUJOCO_GL=backend`` in a fresh process, else the reason it does not."""
    env = {**os.environ, "MUJOCO_GL": backend}
    if backend in ("egl", "osmesa"):
        env["PYOPENGL_PLATFORM"] = backend
    else:
        env.pop("PYOPENGL_PLATFORM", None)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the test render did not finish within {timeout:.0f} s"
    if out.returncode == 0 and "rendered" in out.stdout:
        return None
    lines = [line.strip() for line in out.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {out.returncode}"


def select_gl_backend(candidates: Iterable[str] | None = None, refresh: bool = False) -> GLChoice:
    """Choose and set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) for this process; cached after the first call.

    ``backend`` is None when nothing renders; ``message`` then says what was tried and what to install."""
    global _choice
    if _choice is not None and not refresh:
        return _choice
    user = os.environ.get("MUJOCO_GL", "").strip().lower()
    if user in DISABLED:
        _choice = GLChoice(None, user_set=True)
        return _choice
    names = [user] if user else list(candidates or _default_candidates())
    tried = {}
    for name in names:
        reason = probe(name)
        if reason is None:
            os.environ["MUJOCO_GL"] = name
            if name in ("egl", "osmesa"):
                os.environ["PYOPENGL_PLATFORM"] = name
            _choice = GLChoice(name, tried, user_set=bool(user))
            return _choice
        tried[name] = reason
    _choice = GLChoice(None, tried, user_set=bool(user))
    return _choice


def _default_candidates() -> list[str]:
    # A window system's GL (glfw) only where there is a display to open a (hidden) window on.
    return [*CANDIDATES, *(["glfw"] if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") else [])]


# ---- encoding ----------------------------------------------------------------------------------
def write_video(frames: list[np.ndarray] | np.ndarray, path: str | Path, fps: float) -> Path:
    """Write ``[T, H, W, 3]`` uint8 frames as an MP4 (H.264 through imageio-ffmpeg) or a GIF (pillow), by suffix.

    MP4 keeps every frame. A GIF keeps every frame too, but pillow merges consecutive *identical* frames into one
    longer frame, so a GIF of a still scene has fewer frames than the episode has steps."""
    import imageio.v2 as imageio
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames [T, H, W, 3] with T >= 1, got shape {frames.shape}")
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio
        # GIF delays are in 1/100 s: 1000 / fps ms is rounded to the nearest 10 ms by the format.
        iio.imwrite(path, frames, extension=".gif", plugin="pillow", duration=1000.0 / fps, loop=0)
        return path
    # yuv420p (what players accept) needs even sizes: macro_block_size=2 lets imageio-ffmpeg pad odd ones.
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=2, quality=7) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def count_frames(path: str | Path) -> int:
    """The number of frames in a video file written by ``write_video`` (decoded, not read from the header)."""
    import imageio.v2 as imageio
    path = Path(path)
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio
        return int(iio.improps(path, plugin="pillow", index=None).shape[0])
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return reader.count_frames()
