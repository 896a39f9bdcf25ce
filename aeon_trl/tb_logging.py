"""TensorBoard extras for a run logged with torchrl's ``TensorboardLogger`` (its ``.experiment`` is a SummaryWriter):
the config as hyperparameters (HParams tab) and the evaluation video (Images tab, animated).

torchrl's ``TensorboardLogger.log_video`` and torch's ``SummaryWriter.add_video`` encode through ``moviepy.editor``,
which moviepy 2 no longer has (add_video then logs an empty image, torchrl raises without moviepy). ``log_video``
writes the same summary ``add_video`` writes, an animated GIF image, encoded by imageio/pillow instead.
"""
from __future__ import annotations

import io
import math
from typing import Any, Mapping

import numpy as np


def _writer(logger_or_writer):
    return getattr(logger_or_writer, "experiment", logger_or_writer)


def flat_hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """Nested config dict -> ``{"section.key": value}`` with the types add_hparams takes (lists as strings)."""
    flat = {}
    for section, values in config.items():
        items = values.items() if isinstance(values, Mapping) else [(None, values)]
        for key, value in items:
            name = f"{section}.{key}" if key is not None else section
            flat[name] = value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
    return flat


def log_hparams(logger, config: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """The config (``cfg.to_dict()``) and the run's outcome (e.g. ``{"eval_mean": ...}``) in the HParams tab.

    The session is written into the run's own log folder (``run_name="."``), so TensorBoard links it to the run's
    scalars; the metrics go under ``hparams/`` so they do not mix with the per-iteration scalars."""
    metric_dict = {f"hparams/{k}": float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    _writer(logger).add_hparams(flat_hparams(config), metric_dict, run_name=".")


def gif_bytes(frames: np.ndarray, fps: float, max_size: int = 240) -> tuple[bytes, int, int]:
    """Frames ``[T, H, W, 3]`` uint8 as an animated GIF (pixels strided down to at most ``max_size``)."""
    import imageio.v3 as iio
    frames = np.asarray(frames, dtype=np.uint8)
    stride = max(1, math.ceil(max(frames.shape[1:3]) / max_size))
    frames = np.ascontiguousarray(frames[:, ::stride, ::stride])
    buffer = io.BytesIO()
    iio.imwrite(buffer, frames, extension=".gif", plugin="pillow", duration=1000.0 / fps, loop=0)
    return buffer.getvalue(), frames.shape[1], frames.shape[2]


def log_video(logger, frames: np.ndarray, step: int, fps: float, tag: str = "eval/video",
              max_size: int = 240) -> None:
    """An evaluation episode's frames — ``[T, H, W, 3]`` as ``evaluation.Evaluation.frames`` holds them, or
    ``add_video``'s ``[N, T, C, H, W]`` with N = 1 — as an animated image at ``step`` (env steps)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    frames = np.asarray(frames)
    if frames.ndim == 5:  # add_video's layout: the first video, channels last
        frames = frames[0].transpose(0, 2, 3, 1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3] or [1, T, 3, H, W], got shape {frames.shape}")
    data, height, width = gif_bytes(frames, fps, max_size)
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer = _writer(logger)
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    writer.flush()
