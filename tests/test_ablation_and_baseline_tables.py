"""The protocol ablation's and the baselines' summaries, on small hand-made results tables."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from cldst.analysis import baselines as baseline_tables
from cldst.analysis import protocol_ablation as ablation_tables
from cldst.config import QUIRKS, ConfigError
from cldst.plots import baselines as baseline_plots
from cldst.plots import protocol_ablation as ablation_plots


def ablation_row(variant_off, init, growth, seed, acc, bwt):
    row = {"run_id": f"{variant_off}-{init}-{growth}-{seed}", "benchmark": "split-mnist, 5 tasks",
           "sparse_init": init, "growth": growth, "seed": seed, "acc": acc, "bwt": bwt,
           "protocol": "clean" if variant_off == "clean" else "reference", "free_init": "theta0"}
    for q in QUIRKS:
        row[q] = variant_off != "clean"
    if variant_off not in ("clean", "reference"):
        if variant_off == "free_init":
            row["free_init"] = "theta0"
        else:
            row[variant_off] = False
    if variant_off not in ("clean", "free_init"):
        row["free_init"] = "zero"
    return row


def ablation_table():
    rows = []
    for variant, base in (("clean", 90.0), ("reference", 70.0), ("test_augment", 74.0), ("free_init", 60.0)):
        for init in ("uniform", "ERK"):
            for seed, noise in ((0, -1.0), (1, 1.0)):
                rows.append(ablation_row(variant, init, "gradient", seed, base + noise, 0.5 * noise))
    return pd.DataFrame(rows)


def test_variants_are_named_by_the_quirk_turned_off():
    names = [ablation_tables.variant(r) for _, r in ablation_table().iterrows()]
    assert sorted(set(names)) == ["clean", "reference", "reference − free_init", "reference − test_augment"]


def test_a_run_with_two_quirks_off_is_refused():
    row = pd.Series(ablation_row("test_augment", "ERK", "gradient", 0, 1.0, 0.0))
    row["eval_all_classes"] = False
    with pytest.raises(ConfigError, match="one at a time"):
        ablation_tables.variant(row)


def test_ablation_summary_numbers():
    out = ablation_tables.ablation_summary(ablation_table())
    assert list(out.index) == ["clean", "reference", "reference − free_init", "reference − test_augment"]
    assert out.loc["clean", "uniform / gradient ACC"] == "90.0 ± 1.4"  # std of 89 and 91
    assert out.loc["reference − test_augment", "ERK / gradient BWT"] == "+0.0"
    assert out.loc["reference − test_augment", "Δ ACC vs reference"] == pytest.approx(4.0)
    assert out.loc["reference − free_init", "Δ ACC vs reference"] == pytest.approx(-10.0)
    fig = ablation_plots.ablation_figure(ablation_table())
    assert len(fig.axes) == 1 and len(fig.axes[0].get_yticklabels()) == 4
    plt.close(fig)


def baselines_table():
    rows = []
    settings = [dict(growth="none"), dict(growth="gradient"), dict(growth="gradient", reuse="none"),
                dict(growth="gradient", isolation=False), dict(growth="none", density=1.0)]
    for k, extra in enumerate(settings):
        for seed in (0, 1):
            row = {"run_id": f"{k}-{seed}", "benchmark": "split-mnist, 5 tasks", "sparse_init": "uniform",
                   "growth": "gradient", "density": 0.2, "update_frequency": 10, "reuse": "all",
                   "isolation": True, "seed": seed, "acc": 80.0 + k + seed, "bwt": -k * seed,
                   "train_flops_vs_dense": 0.2 + 0.1 * k}
            row.update(extra)
            row["sparsity"] = round(1 - row["density"], 10)
            rows.append(row)
    return pd.DataFrame(rows)


def test_baselines_are_named_and_summarised():
    t = baselines_table()
    assert [baseline_tables.baseline(r) for _, r in t.iterrows()][::2] == [
        "static", "gradient", "no reuse (gradient)", "fine-tuning (gradient)", "dense isolated"]
    out = baseline_tables.baselines_summary(t)
    assert list(out.index) == [("0 %", "dense isolated"), ("80 %", "static"), ("80 %", "gradient"),
                               ("80 %", "no reuse (gradient)"), ("80 %", "fine-tuning (gradient)")]
    assert out.loc[("80 %", "static"), "ACC (%)"] == "80.5 ± 0.7"
    assert out.loc[("80 %", "fine-tuning (gradient)"), "BWT"] == "-1.5 ± 2.1"
    assert out.loc[("0 %", "dense isolated"), "training FLOPs vs dense"] == "0.600 ± 0.000"
    fig = baseline_plots.acc_vs_training_flops(t)
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_a_table_without_flops_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="no training FLOPs"):
        baseline_tables.baselines_summary(baselines_table().drop(columns=["train_flops_vs_dense"]))
