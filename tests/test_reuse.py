"""cldst/method/reuse.py on hand-made masks, with every expected number worked out by hand."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from cldst.analysis import reuse as reuse_tables
from cldst.config import ConfigError
from cldst.method import reuse
from cldst.plots import reuse as reuse_plots


def mask(shape, on) -> torch.Tensor:
    m = torch.zeros(math.prod(shape), dtype=torch.bool)
    m[list(on)] = True
    return m.reshape(shape)


NAMES = ["conv1.weight", "linear.weight"]

# Layer A: 10 positions (shape (10,)); layer B: 10 positions (shape (2, 5), flat indices).
#   A: t0 {0,1,2,3}      t1 {0,1,4,5,6}           t2 {0,4,7,8}
#   B: t0 {0,1}          t1 {2,...,9}             t2 {0,5}
# Owners: A 0-3 → t0, 4-6 → t1, 7-8 → t2, 9 free;  B 0-1 → t0, 2-9 → t1 (full after t1).
TASK_MASKS = [
    [mask((10,), [0, 1, 2, 3]), mask((2, 5), [0, 1])],
    [mask((10,), [0, 1, 4, 5, 6]), mask((2, 5), range(2, 10))],
    [mask((10,), [0, 4, 7, 8]), mask((2, 5), [0, 5])],
]
# All layers:
#   t0: 4 + 2 = 6 active, all new                              → [1, -, -]
#   t1: A: 0,1 (t0), 4,5,6 new; B: 8 new → 13: 2 t0, 11 new     → [2/13, 11/13, -]
#   t2: A: 0 (t0; t1 drew it too), 4 (t1), 7,8 new; B: 0 (t0), 5 (t1) → 6: 2, 2, 2 → [1/3, 1/3, 1/3]
R = [[1.0, None, None], [2 / 13, 11 / 13, None], [1 / 3, 1 / 3, 1 / 3]]


def close(a, b) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and math.isclose(x, y))
               for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_reuse_matrix_by_hand():
    r = reuse.reuse_matrix(TASK_MASKS)
    assert close(r, R)
    for t, row in enumerate(r):
        assert math.isclose(sum(row[: t + 1]), 1.0)
        assert row[t + 1:] == [None] * (len(r) - t - 1)


def test_layer_reuse_by_hand():
    per = reuse.layer_reuse(TASK_MASKS, NAMES)
    assert list(per) == NAMES
    # A: t1 {0,1 | 4,5,6} → 2/5, 3/5; t2 {0 | 4 | 7,8} → 1/4, 1/4, 2/4
    assert close(per["conv1.weight"], [[1.0, None, None], [0.4, 0.6, None], [0.25, 0.25, 0.5]])
    # B: t1 all 8 new; t2 {0 | 5} → 1/2, 1/2, nothing new
    assert close(per["linear.weight"], [[1.0, None, None], [0.0, 1.0, None], [0.5, 0.5, 0.0]])


def test_owner_is_the_first_task():
    # Position 0 is in every mask: always task 0's. Position 1 joins at t1: task 1's at t2.
    masks = [[mask((4,), [0])], [mask((4,), [0, 1])], [mask((4,), [0, 1])]]
    assert close(reuse.reuse_matrix(masks), [[1.0, None, None], [0.5, 0.5, None], [0.5, 0.5, 0.0]])


def test_empty_mask_row_is_zero_and_reuses_nothing():
    masks = [[mask((4,), [0, 1])], [mask((4,), [])], [mask((4,), [1, 2])]]
    r = reuse.reuse_matrix(masks)
    assert close(r, [[1.0, None, None], [0.0, 0.0, None], [0.5, 0.0, 0.5]])
    assert math.isclose(reuse.reuse_summary(r), (0.0 + 0.5) / 2)


def test_capacity_and_saturation_by_hand():
    cap = reuse.capacity_per_layer(TASK_MASKS, NAMES)
    # A owns 4, 7, 9 of 10; B owns 2, 10, 10 of 10.
    assert cap == {"conv1.weight": [0.4, 0.7, 0.9], "linear.weight": [0.2, 1.0, 1.0]}
    assert reuse.saturation_task(cap) == {"conv1.weight": None, "linear.weight": 1}
    assert reuse.saturation_task(cap, threshold=0.7) == {"conv1.weight": 1, "linear.weight": 1}
    assert reuse.saturation_task(cap, threshold=0.4) == {"conv1.weight": 0, "linear.weight": 1}


def test_reuse_summary():
    # reused: t1 2/13, t2 2/3 → mean 16/39
    assert math.isclose(reuse.reuse_summary(R), 16 / 39)
    assert reuse.reuse_summary([[1.0]]) == 0.0
    assert reuse.reuse_summary([]) == 0.0


def test_reuse_metrics_is_json():
    m = json.loads(json.dumps(reuse.reuse_metrics(TASK_MASKS, NAMES)))
    assert close(m["reuse_matrix"], R)
    assert m["layer_saturation"] == {"conv1.weight": None, "linear.weight": 1}
    assert math.isclose(m["reuse_mean"], 16 / 39)


def test_mismatched_inputs():
    with pytest.raises(ValueError, match="shapes"):
        reuse.reuse_matrix([[mask((4,), [0])], [mask((5,), [0])]])
    with pytest.raises(ValueError, match="names"):
        reuse.capacity_per_layer(TASK_MASKS, NAMES[:1])
    assert reuse.reuse_matrix([]) == []


def test_agrees_with_the_backbone():
    """On a real backbone's random masks: the final per-layer capacity is ``used``'s density and
    ``Backbone.capacity`` is its weighted mean."""
    from cldst.method.masks import Backbone
    from cldst.method.models import build_model

    torch.manual_seed(0)
    bb = Backbone(build_model("resnet18", 6, 1, width=0.125))
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        bb.merge(bb.new_task_mask(0.3, "ERK", g))
    cap = reuse.capacity_per_layer(bb.task_masks, bb.names)
    assert [c[-1] for c in cap.values()] == [int(u.sum()) / u.numel() for u in bb.owned]
    sizes = [u.numel() for u in bb.owned]
    owned = sum(c[-1] * n for c, n in zip(cap.values(), sizes))
    assert math.isclose(owned / sum(sizes), bb.capacity())
    r = reuse.reuse_matrix(bb.task_masks)
    assert all(math.isclose(sum(row[: t + 1]), 1.0) for t, row in enumerate(r))
    assert 0 < reuse.reuse_summary(r) < 1


def test_short_names():
    assert reuse_plots.short_name("layer2.0.shortcut.0.weight") == "L2.0.sc.0"
    assert reuse_plots.short_name("layers.3.conv1.weight") == "3.conv1"
    assert reuse_plots.short_name("linear.weight") == "linear"


def test_reuse_heatmap():
    fig = reuse_plots.reuse_heatmap(R)
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["100", "15", "85", "33", "33", "33"]  # lower triangle only, in %
    assert "owner" in fig.axes[0].get_xlabel()


def test_layer_capacity_marks_saturated_cells():
    fig = reuse_plots.layer_capacity(reuse.capacity_per_layer(TASK_MASKS, NAMES))
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "linear"]
    hatched = [p for p in ax.patches if p.get_hatch() == "//"]
    assert sorted(p.get_xy() for p in hatched) == [(1, 1), (2, 1)]  # layer B after tasks 2 and 3
    assert [t.get_text() for t in ax.texts] == ["40", "70", "90", "20", "full", "full"]


def results_table() -> pd.DataFrame:
    """4 runs of one benchmark at sparsity 80 %: ERK/gradient × 2 seeds, uniform/gradient, ERK/random."""
    rows = [
        ("ERK", "gradient", 0, R, {"conv1.weight": None, "linear.weight": 1}),  # reused 16/39
        ("ERK", "gradient", 1, [[1, None, None], [0.5, 0.5, None], [0.25, 0.25, 0.5]],
         {"conv1.weight": 2, "linear.weight": 2}),  # reused (0.5 + 0.5) / 2 = 0.5
        ("uniform", "gradient", 0, [[1, None, None], [0, 1, None], [0, 0, 1]],
         {"conv1.weight": None, "linear.weight": None}),  # reused 0
        ("ERK", "random", 0, [[1, None, None], [0.1, 0.9, None], [0.3, 0.2, 0.5]],
         {"conv1.weight": 0, "linear.weight": None}),  # reused (0.1 + 0.5) / 2 = 0.3
    ]
    return pd.DataFrame([dict(benchmark="split-mnist, 3 tasks", sparse_init=i, growth=g, sparsity=0.8,
                              update_frequency=4, seed=s, reuse_matrix=json.dumps(r), layer_saturation=json.dumps(sat))
                         for i, g, s, r, sat in rows])


def test_mean_reuse_table():
    out = reuse_tables.mean_reuse_table(results_table())
    assert list(out.columns) == ["random", "gradient"]
    assert list(out.index) == [("split-mnist, 3 tasks", "80 %", "uniform"), ("split-mnist, 3 tasks", "80 %", "ERK")]
    assert out.loc[("split-mnist, 3 tasks", "80 %", "ERK"), "gradient"] == pytest.approx((16 / 39 + 0.5) / 2)
    assert out.loc[("split-mnist, 3 tasks", "80 %", "ERK"), "random"] == pytest.approx(0.3)
    assert out.loc[("split-mnist, 3 tasks", "80 %", "uniform"), "gradient"] == 0.0
    assert np.isnan(out.loc[("split-mnist, 3 tasks", "80 %", "uniform"), "random"])


def test_saturation_table_and_figure():
    table = results_table()
    med = reuse_tables.saturation_table(table)
    assert list(med.index) == NAMES
    b = "split-mnist, 3 tasks"
    # ERK/gradient: conv1 never and task 3 → median never (NaN); linear tasks 2 and 3 → 2.5
    assert np.isnan(med.loc["conv1.weight", (b, "ERK", "gradient", 0.8)])
    assert med.loc["linear.weight", (b, "ERK", "gradient", 0.8)] == 2.5
    assert med.loc["conv1.weight", (b, "ERK", "random", 0.8)] == 1.0
    assert med[(b, "uniform", "gradient", 0.8)].isna().all()
    fig = reuse_plots.saturation_figure(table)
    assert len(fig.axes) == 2  # one panel and the colour bar
    two = pd.concat([table, table.assign(benchmark="cifar10, 5 tasks")], ignore_index=True)
    assert len(reuse_plots.saturation_figure(two).axes) == 3
    never = reuse_plots.saturation_figure(table[table["sparse_init"] == "uniform"])  # no layer ever fills
    assert len(never.axes) == 2


@pytest.mark.parametrize("call, column", [(reuse_tables.mean_reuse_table, "reuse_matrix"),
                                          (reuse_tables.saturation_table, "layer_saturation"),
                                          (reuse_plots.saturation_figure, "layer_saturation")])
def test_tables_without_the_columns(call, column):
    table = results_table().drop(columns=["reuse_matrix", "layer_saturation"])
    with pytest.raises(ConfigError, match=f"no '{column}' column") as err:
        call(table)
    assert "\n" not in str(err.value)
    empty = results_table().assign(**{column: np.nan})
    with pytest.raises(ConfigError, match="no run"):
        call(empty)


def test_final_capacity_figure_marks_full_layers():
    import json as _json

    import pandas as pd

    table = pd.DataFrame([
        {"sparse_init": "ERK", "growth": "gradient", "sparsity": 0.8, "seed": s,
         "layer_capacity": _json.dumps({"conv1.weight": [1.0, 1.0], "linear.weight": [0.2, 0.4 + 0.1 * s]})}
        for s in range(3)])
    fig = reuse_plots.final_capacity_figure(table)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["full", "50"]  # conv1 saturated; linear: median of 40, 50, 60 %
    plt.close(fig)
