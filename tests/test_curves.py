"""The run's learning-curve PNG: both curves, the wall-clock axis when history rows carry wall_time."""
import numpy as np

from aeon_trl.curves import learning_curve_figure, plot_learning_curve, series, wall_time_mapping

PNG = b"\x89PNG\r\n\x1a\n"


def history(with_time=True, seconds_per_row=0.7):
    rows = []
    for i in range(1, 31):
        row = {"frames": 4096 * i, "episode_return": float("nan") if i == 1 else 10.0 * i}
        if i % 3 == 0:
            row["eval_return"] = 12.0 * i
        if with_time:
            row["wall_time"] = seconds_per_row * i
        rows.append(row)
    return rows


def test_series_skips_rows_without_a_finite_value():
    frames, values = series(history(), "eval_return")
    assert frames.tolist() == [4096.0 * i for i in range(3, 31, 3)] and values.tolist() == [12.0 * i for i in range(3, 31, 3)]
    frames, _ = series(history(), "episode_return")
    assert frames[0] == 8192  # the first row has no finished episode yet (NaN)


def test_png_is_written(tmp_path):
    assert plot_learning_curve(history(), tmp_path / "a.png", "t", final_eval=400.0).read_bytes()[:8] == PNG
    assert plot_learning_curve([], tmp_path / "b.png", "empty").read_bytes()[:8] == PNG


def test_both_curves_and_the_wall_clock_axis():
    fig = learning_curve_figure(history(), "t", final_eval=400.0)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("training return" in s for s in labels) and any("evaluation return" in s for s in labels)
    (top,) = ax.child_axes
    assert top.get_xlabel() == "wall-clock time (s)"
    assert learning_curve_figure(history(with_time=False), "t").axes[0].child_axes == []


def test_wall_time_mapping():
    to_time, to_frames, unit = wall_time_mapping(history())
    assert unit == "s" and np.isclose(to_time(4096.0 * 10), 7.0) and np.isclose(to_frames(7.0), 4096.0 * 10)
    assert np.isclose(to_time(0.0), 0.0) and np.isclose(to_time(4096.0 * 40), 28.0)  # extrapolated at the run's rate
    to_time, _, unit = wall_time_mapping(history(seconds_per_row=60.0))
    assert unit == "min" and np.isclose(to_time(4096.0 * 10), 10.0)
    assert wall_time_mapping(history(with_time=False)) is None
