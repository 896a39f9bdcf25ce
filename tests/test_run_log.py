"""The run log: a resumed run's log reads as one uninterrupted run (rows logged after the checkpoint dropped)."""
import csv

from aeon_trl.config import Config
from aeon_trl.run_log import make_logger


def _log(logger, steps_values):
    for step, value in steps_values:
        logger.log_scalar("x", value, step=step)


def test_resumed_csv_log_drops_the_rows_after_the_checkpoint(tmp_path):
    cfg = Config.from_dict({"logger": "csv"})
    _log(make_logger(cfg, tmp_path), [(1, 1.0), (2, 2.0), (3, 3.0)])  # killed after step 3, checkpoint at 2
    _log(make_logger(cfg, tmp_path, resume_step=2), [(3, 30.0)])
    with (tmp_path / "logs" / "scalars" / "x.csv").open() as f:
        assert [(int(s), float(v)) for s, v in csv.reader(f)] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_resumed_tensorboard_log_purges_the_events_after_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = Config.from_dict({"logger": "tensorboard"})
    for logger, rows in ((make_logger(cfg, tmp_path), [(1, 1.0), (2, 2.0), (3, 3.0)]),
                         (make_logger(cfg, tmp_path, resume_step=2), [(3, 30.0)])):
        _log(logger, rows)
        logger.experiment.close()
    events = EventAccumulator(str(tmp_path / "logs")).Reload().Scalars("x")
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_no_logger():
    assert make_logger(Config.from_dict({"logger": "none"}), None) is None
