"""DET plots: one panel per set of curves, side by side (`earshot eval wake --fsdd --plot`)."""

import numpy as np

from agent.cli.plots import plot_det, plot_det_panels
from models.wake.metrics import DetCurve


def curve(shift: float) -> DetCurve:
    thresholds = np.linspace(0.01, 0.99, 50)
    return DetCurve(thresholds, 100 * (1 - thresholds) ** 2, thresholds**2 * shift, 1.0, 100)


def png_size(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def test_panels_sit_side_by_side_and_one_set_is_one_panel(tmp_path):
    sets = {"speech_embedding": {"zero": curve(0.5)}, "dscnn": {"zero": curve(1.0)}}
    plot_det_panels(tmp_path / "both.png", sets)
    plot_det(tmp_path / "one.png", sets["dscnn"])
    (both_w, both_h), (one_w, one_h) = (
        png_size(tmp_path / "both.png"),
        png_size(tmp_path / "one.png"),
    )
    assert both_h == one_h and both_w > 1.6 * one_w


def test_a_miss_rate_is_read_at_the_first_grid_threshold_at_or_above():
    c = curve(1.0)
    assert c.miss_rate_at_threshold(c.thresholds[10]) == c.miss_rate[10]
    assert c.miss_rate_at_threshold((c.thresholds[10] + c.thresholds[11]) / 2) == c.miss_rate[11]
    assert c.miss_rate_at_threshold(1.5) == 1.0
