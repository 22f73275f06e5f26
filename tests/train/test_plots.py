"""Training plots: one run's curves and several runs side by side (the LRA per-task figure)."""

import csv

import pytest

pytest.importorskip("matplotlib")

from hippos.train.plots import plot_compare, plot_curves, read_metrics

FIELDS = ["step", "epoch", "split", "loss", "acc", "lr", "samples_per_s", "elapsed_s"]


def _metrics(path, accs, test=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for e, acc in enumerate(accs, start=1):
            w.writerow([10 * e - 5, e - 0.5, "train", 1.0 / e, "", 0.01, 100.0, e])
            w.writerow([10 * e, e, "val", 1.1 / e, acc, "", "", e])
        if test is not None:
            w.writerow([10 * len(accs), "", "test_best", 0.5, test, "", "", ""])
    return path


def test_read_metrics_parses_numbers_and_blanks(tmp_path):
    rows = read_metrics(_metrics(tmp_path / "m.csv", [0.5, 0.6], test=0.7))
    assert rows[1] == {"step": 10.0, "epoch": 1.0, "split": "val", "loss": 1.1, "acc": 0.5, "lr": None,
                       "samples_per_s": None, "elapsed_s": 1.0}
    assert rows[-1]["split"] == "test_best" and rows[-1]["epoch"] is None and rows[-1]["acc"] == 0.7


def test_plot_compare_draws_the_runs_it_finds(tmp_path):
    a = _metrics(tmp_path / "a.csv", [0.5, 0.6, 0.7], test=0.68)
    b = _metrics(tmp_path / "b.csv", [0.3, 0.35])  # cut: no test row
    out = tmp_path / "task.png"
    assert plot_compare({"S4": a, "S4D": tmp_path / "missing.csv", "Transformer": b}, out, "t", {"paper S4": 90.0})
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def test_plot_compare_with_nothing_to_draw_writes_nothing(tmp_path):
    out = tmp_path / "task.png"
    assert plot_compare({"S4": tmp_path / "missing.csv"}, out) is False
    assert not out.exists()


def test_plot_curves_still_draws_one_run(tmp_path):
    out = tmp_path / "curves.png"
    assert plot_curves(_metrics(tmp_path / "m.csv", [0.5, 0.6], test=0.7), out, "run")
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("losses", [(0.7212, 0.6951, 0.6935, 0.6931), (2.3, 0.9, 0.2, 0.04)])
def test_loss_axis_labels_fit_in_the_figure(losses):
    # a loss within a decade (Pathfinder at ln 2) gets labelled minor ticks; in scientific notation
    # (6.95 × 10⁻¹) they were wider than the left margin and cut off
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hippos.train.plots import _curves_figure

    rows = [{"step": 10.0 * k, "epoch": k / 2, "split": "train", "loss": v, "acc": 0.5} for k, v in enumerate(losses, 1)]
    fig = _curves_figure(rows, "t", "cross-entropy")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax_loss = fig.axes[0]
    labels = [t for minor in (False, True) for t in ax_loss.get_yticklabels(minor=minor)
              if t.get_visible() and t.get_text() and ax_loss.get_ylim()[0] <= t.get_position()[1] <= ax_loss.get_ylim()[1]]
    assert labels, "the loss axis has no labels"
    for t in labels:
        assert t.get_window_extent(renderer).x0 >= 0, f"label {t.get_text()!r} is cut off"
        assert "10^" not in t.get_text() and "times" not in t.get_text()
