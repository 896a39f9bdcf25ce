"""TensorBoard hparams and the evaluation video through torchrl's TensorboardLogger, read back from the event files."""
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchrl.record.loggers import TensorboardLogger

from aeon_trl.config import Config
from aeon_trl.tb_logging import flat_hparams, gif_bytes, log_hparams, log_video


def frames(t=12, h=60, w=80):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(t, h, w, 3), dtype=np.uint8)


def test_flat_hparams_covers_every_config_leaf():
    cfg = Config().to_dict()
    flat = flat_hparams(cfg)
    assert len(flat) == sum(len(v) for v in cfg.values())
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    assert flat["model.hidden_sizes"] == "[64, 64]" and flat["env.env_id"] == cfg["env"]["env_id"]


def test_gif_is_strided_down_and_keeps_every_frame():
    data, h, w = gif_bytes(frames(), fps=25, max_size=40)
    assert data[:6] == b"GIF89a" and (h, w) == (30, 40)
    import imageio.v3 as iio
    assert iio.improps(data, extension=".gif", index=None).shape[0] == 12  # random frames: none merged


def test_hparams_and_video_in_the_event_files(tmp_path):
    logger = TensorboardLogger(exp_name="logs", log_dir=str(tmp_path))
    logger.log_scalar("episode_return", 1.0, step=0)
    log_hparams(logger, Config().to_dict(), {"eval_mean": 12.5, "steps_per_second": 1000.0, "missing": None})
    log_video(logger, frames(), step=4096, fps=25)
    log_video(logger, frames().transpose(0, 3, 1, 2)[None], step=8192, fps=25, tag="eval/video_nchw")  # add_video's
    logger.experiment.close()
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    images = acc.Images("eval/video")
    assert [i.step for i in images] == [4096] and images[0].encoded_image_string[:6] == b"GIF89a"
    assert (images[0].width, images[0].height) == (80, 60)
    assert [i.step for i in acc.Images("eval/video_nchw")] == [8192]
    assert acc.Scalars("hparams/eval_mean")[0].value == 12.5
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
