"""tools/parity: parsing the original's log and cldst's run folder, the table, the class-folder layout."""

from __future__ import annotations

import csv
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.parity import layout, parse, run  # the repository root is on sys.path: pyproject's pythonpath

MATRIX = np.array([[41.5, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]] +
                  [[30.25 + i, 50.5, 1, 2, 3, 4, 5, 6, 7, 33.33333333] for i in range(9)])


def original_log(matrix: np.ndarray = MATRIX, epochs: int = 2) -> str:
    """A log as the original's miniImageNet100.main() prints it (utils.print_and_log / core.train /
    core.evaluate: their format strings, verbatim), with the PARITY lines original_entry.py adds."""
    t = len(matrix)
    out = ["Namespace(dataset='miniImagenet100', num_classes=100, num_tasks=10, seed=0)",
           "=" * 60, "Dataset: miniImagenet100, #Task:10, #ClassPerTask:10", "Model: resnet18"]
    for task in range(t):
        out.append("TRAINING...\n")
        for e in range(epochs):
            out += ["Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f} Accuracy: {}/{} ({:.4f}%) ".format(  # noqa: UP032
                        e, 0, 5120, 0.0, 2.302585, 3, 128, 2.34375),
                    "\n{}:Accuracy: {}/{} ({:.4f}%)\nTime taken for epoch: {:.2f} seconds.\n".format(  # noqa: UP032
                        "Training summary", 1250, 5000, 25.0, 12.5),
                    f"PARITY epoch task={task} epoch={e} loss={2.0 - task / 10 - e / 100!r} "
                    f"acc={10.0 + task + e / 4!r} batches=40",
                    "Saving Model.\n", "Saving Mask.\n"]
        out.append("{}: Average loss: {:.4f}, Accuracy: {}/{} ({:.4f}%)\n".format(
            "Test evaluation", 1.5, 300, 1000, 30.0))
    final = matrix[-1]
    inc = np.array([final[: i + 1].mean() for i in range(t)])
    bwt = np.zeros(t)
    for i in range(1, t):
        for j in range(i):
            bwt[i] += (matrix[i, j] - matrix[j, j]) / i
    out += ["TESTING...\n", "ACCURACY MATRIX:\n {}\n".format(matrix),  # noqa: UP032
            "INCREMENTAL ACCURACY:\n {}\n".format(inc), "BWT:\n {}\n".format(bwt),  # noqa: UP032
            "FWT:\n {}\n".format(np.zeros(t)), "Average BWT:\n {}\n".format(bwt[-1]),  # noqa: UP032
            "Average FWT:\n {}\n".format(np.float64(0.0))]  # noqa: UP032
    return "\n".join(out) + "\n"


def test_original_log_matrix_epochs_and_metrics():
    text = original_log()
    assert "\n [[41.5" in text and text.count("\n") > 60  # numpy wraps each 10-value row over two lines
    r = parse.parse_original_log(text, "log.txt")
    assert r.matrix == MATRIX.tolist()
    assert r.incremental == pytest.approx([float(MATRIX[-1, : i + 1].mean()) for i in range(10)], abs=1e-8)
    assert r.average_bwt == pytest.approx(float(np.mean(MATRIX[-1, :9] - np.diag(MATRIX)[:9])), abs=1e-8)
    assert len(r.epochs) == 20 and r.epochs[(0, 0)] == (2.0, 10.0) and r.epochs[(9, 1)] == (2.0 - 0.9 - 0.01, 19.25)


def test_original_log_scientific_notation():
    matrix, inc = np.array([[1e-5, 100.0], [3.0, 4.0]]), np.array([3.0, 3.5])
    text = f"ACCURACY MATRIX:\n {matrix}\n\nINCREMENTAL ACCURACY:\n {inc}\n"
    assert "1.e-05" in text
    r = parse.parse_original_log(text, "x.log")
    assert r.matrix == [[1e-5, 100.0], [3.0, 4.0]] and r.incremental == [3.0, 3.5] and r.average_bwt is None


def test_original_log_errors_name_the_file():
    with pytest.raises(parse.ParseError, match=r"^seed0/log\.txt: no 'ACCURACY MATRIX:' line"):
        parse.parse_original_log("PARITY epoch task=0 epoch=0 loss=1.0 acc=2.0 batches=3\n", "seed0/log.txt")
    partial = parse.parse_original_log("PARITY epoch task=0 epoch=0 loss=1.0 acc=2.0\n", "a", require_final=False)
    assert partial.epochs == {(0, 0): (1.0, 2.0)} and partial.matrix is None
    with pytest.raises(parse.ParseError, match=r"^a\.log: task 0 epoch 0 is reported twice"):
        parse.parse_original_log("PARITY epoch task=0 epoch=0 loss=1 acc=2\n" * 2, "a.log")
    with pytest.raises(parse.ParseError, match=r"^b\.log: 'ACCURACY MATRIX:' is summarised"):
        parse.parse_original_log("ACCURACY MATRIX:\n [[1. 2. ... 3.]]\n", "b.log")
    with pytest.raises(parse.ParseError, match=r"^c\.log: ACCURACY MATRIX is not a square"):
        parse.parse_original_log("ACCURACY MATRIX:\n [[1. 2.]]\n", "c.log")


def write_cldst_run(folder: Path, epochs: dict, matrix: list | None, incremental: list | None = None) -> None:
    folder.mkdir(parents=True)
    with (folder / "history.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "task", "epoch", "step", "loss", "train_acc", "lr", "prune_rate", "regrown_new", "seconds"])
        for (t, e), (loss, acc) in epochs.items():
            w.writerow(["update", t, e, 5, "", "", "", 0.4, 100, ""])
            w.writerow(["epoch", t, e, 10, loss, acc, 0.001, "", "", 1.5])
    if matrix is not None:
        metrics = {"acc_matrix": matrix, "acc": 1.0}
        if incremental is not None:
            metrics["reference_metrics"] = {"incremental accuracy": incremental, "Average BWT": -2.5}
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_cldst_run_folder(tmp_path):
    write_cldst_run(tmp_path / "a", {(0, 0): (0.5, 60.0), (1, 0): (0.75, 40.0)}, [[60.0, None], [55.0, 45.0]], [55.0, 50.0])
    r = parse.parse_cldst_run(tmp_path / "a")
    assert r.epochs == {(0, 0): (0.5, 60.0), (1, 0): (0.75, 40.0)}
    assert r.matrix[1] == [55.0, 45.0] and np.isnan(r.matrix[0][1])
    assert r.incremental == [55.0, 50.0] and r.average_bwt == -2.5
    write_cldst_run(tmp_path / "b", {(0, 0): (0.5, 60.0)}, [[60.0, 10.0], [50.0, 40.0]])  # no reference_metrics
    assert parse.parse_cldst_run(tmp_path / "b").incremental == [50.0, 45.0]
    write_cldst_run(tmp_path / "c", {(0, 0): (0.5, 60.0)}, None)  # not finished
    assert parse.parse_cldst_run(tmp_path / "c").matrix is None
    with pytest.raises(parse.ParseError, match=r"history\.csv: missing"):
        parse.parse_cldst_run(tmp_path / "none")


def result(epochs: dict, matrix: list, inc: list, bwt: float) -> parse.RunResult:
    return parse.RunResult("x", epochs, matrix, inc, bwt)


def test_markdown_table_one_seed():
    runs = {0: {"original": result({(0, 0): (2.3026, 12.5), (1, 0): (1.5, 30.0)}, [[41.5, 0.0], [30.25, 50.5]],
                                   [30.25, 40.375], -11.25),
                "cldst": result({(0, 0): (2.2, 15.0), (1, 0): (1.25, 32.5)}, [[40.0, 1.0], [32.0, 48.0]],
                                [32.0, 40.0], -8.0)}}
    md = parse.render_markdown(runs, "settings here")
    assert "| 1 | 1 | 2.3026 | 2.2000 | -0.1026 | 12.50 | 15.00 | +2.50 |" in md
    assert "| 2 | 1 | 1.5000 | 1.2500 | -0.2500 | 30.00 | 32.50 | +2.50 |" in md
    assert "| 2 | 30.25 | 50.50 |" in md and "| 2 | 32.00 | 48.00 |" in md  # the two matrices' last rows
    assert "| task 1 | 30.25 | 32.00 | +1.75 |" in md and "| task 2 | 50.50 | 48.00 | -2.50 |" in md
    assert "| incremental accuracy (final) | 40.38 | 40.00 | -0.38 |" in md
    assert "| Average BWT | -11.25 | -8.00 | +3.25 |" in md and "settings here" in md
    j = parse.to_json(runs)
    assert j["seeds"]["0"]["original"]["matrix"] == [[41.5, 0.0], [30.25, 50.5]]
    assert j["final"][0] == {"what": "task 1", "original": {"mean": 30.25, "sd": None},
                             "cldst": {"mean": 32.0, "sd": None}}


def test_markdown_table_two_seeds_and_a_missing_side():
    a = result({(0, 0): (1.0, 10.0)}, [[10.0, 0.0], [20.0, 30.0]], [20.0, 25.0], -1.0)
    b = result({(0, 0): (3.0, 20.0)}, [[10.0, 0.0], [40.0, 50.0]], [40.0, 45.0], -3.0)
    md = parse.render_markdown({0: {"original": a, "cldst": None}, 1: {"original": b, "cldst": None}})
    assert "mean ± sd over seeds 0, 1" in md
    assert "| 1 | 1 | 2.0000 ± 1.4142 | — | — | 15.00 ± 7.07 | — | — |" in md
    assert "| task 1 | 30.00 ± 14.14 | — | — |" in md and "| 2 | 30.00 | 40.00 |" in md  # mean matrix
    assert "## Accuracy matrix, cldst" in md and "(not run)" in md


def test_run_maps_settings_to_both_command_lines(tmp_path):
    a = run.build_parser().parse_args(["--tasks", "2", "--classes", "4", "--growth", "unfired", "--seeds", "3",
                                       "--tiny", str(tmp_path / "tiny-imagenet-200"), "--cldst-extra", "device=cpu"])
    orig = run.original_argv(a, 3)
    assert orig[orig.index("--growth") + 1] == "random_unfired" and orig[orig.index("--num_classes_per_task") + 1] == "2"
    assert orig[orig.index("--seed") + 1] == "3" and orig[orig.index("--dataset") + 1] == "miniImagenet100"
    ours = run.cldst_argv(a, 3, tmp_path / "out")
    assert ours[ours.index("--growth") + 1] == "unfired" and ours[ours.index("--protocol") + 1] == "reference"
    assert ours[ours.index("--data_dir") + 1] == str(tmp_path) and ours[ours.index("--device") + 1] == "cpu"


def test_original_run_is_reused_rerun_or_refused_never_overwritten(tmp_path, monkeypatch):
    """A finished run of the same settings is reused and an unfinished one rerun; a log.txt from other
    settings, or without this tool's record, is refused and left as it was."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "core.py").write_text("")
    (checkout / "miniImageNet100.py").write_text("")
    args = ["--original", str(checkout), "--original-python", sys.executable, "--tasks", "10", "--classes", "100",
            "--tiny", str(tmp_path / "tiny-imagenet-200")]
    a = run.build_parser().parse_args(args)
    calls = []
    monkeypatch.setattr(run, "_run", lambda cmd, cwd, log, err, what: (calls.append(cmd), log.write_text(original_log())))
    seed0 = tmp_path / "work" / "original" / "seed0"

    run.run_original(a, tmp_path / "work", 0)  # first time: runs
    assert len(calls) == 1 and calls[0][-2:] == ["--seed", "0"]
    run.run_original(a, tmp_path / "work", 0)  # finished: reused
    assert len(calls) == 1
    (seed0 / "log.txt").write_text(original_log()[:500])  # interrupted: the same command again
    run.run_original(a, tmp_path / "work", 0)
    assert len(calls) == 2

    other = run.build_parser().parse_args([*args, "--epochs", "5"])
    before = (seed0 / "log.txt").read_text()
    with pytest.raises(run.HarnessError, match="other settings"):
        run.run_original(other, tmp_path / "work", 0)
    (seed0 / run.COMMAND).unlink()  # a log without this tool's record
    with pytest.raises(run.HarnessError, match="other settings"):
        run.run_original(a, tmp_path / "work", 0)
    assert (seed0 / "log.txt").read_text() == before and len(calls) == 2


def test_original_entry_reports_each_epoch(tmp_path, monkeypatch, capsys):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "core.py").write_text(
        "def train(net, optimizer, task_id, train_loader, num_classes_per_task, regularize, isolate,\n"
        "          batch_size, epoch, device, mask=None, used_params=None):\n"
        "    return 3.0 * (task_id + 1), 50.0 + epoch\n")
    (checkout / "miniImageNet100.py").write_text(
        "import sys\nimport numpy as np\nfrom core import train\n"
        "def main():\n    print('ARGV', sys.argv[1:])\n"
        "    for t in range(2):\n        for e in range(2):\n"
        "            train('net', 'opt', t, [0, 1, 2], 2, False, True, 32, e, 'cpu', None, {})\n"
        "    print('ACCURACY MATRIX:\\n {}\\n'.format(np.array([[50.0, 0.0], [40.0, 60.0]])))\n"
        "    print('INCREMENTAL ACCURACY:\\n {}\\n'.format(np.array([40.0, 50.0])))\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", ["original_entry.py", str(checkout), "--seed", "4"])
    for name in ("miniImageNet100", "core"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    entry = importlib.import_module("tools.parity.original_entry")
    try:
        entry.main()
    finally:
        sys.modules.pop("miniImageNet100", None), sys.modules.pop("core", None)
    out = capsys.readouterr().out
    assert "ARGV ['--seed', '4']" in out and out.rstrip().endswith("PARITY done")
    r = parse.parse_original_log(out, "stdout")
    assert r.epochs == {(0, 0): (1.0, 50.0), (0, 1): (1.0, 51.0), (1, 0): (2.0, 50.0), (1, 1): (2.0, 51.0)}
    assert r.matrix == [[50.0, 0.0], [40.0, 60.0]]


# ------------------------------------------------------------------------------------------ layout
WNIDS = ["n09000004", "n01000002", "n05000003", "n01000001", "n02000005"]  # sorted: ...01, ...02, 02..., 05..., 09...


def fake_tiny(root: Path, train_per_class: int = 3, val_per_class: int = 2) -> Path:
    """Tiny ImageNet's official layout, 8×8 JPEGs, each class its own grey level."""
    tiny = root / "tiny-imagenet-200"
    (tiny / "val" / "images").mkdir(parents=True)
    lines, k = [], 0
    for c, w in enumerate(WNIDS):
        (tiny / "train" / w / "images").mkdir(parents=True)
        (tiny / "train" / w / f"{w}_boxes.txt").write_text("")
        image = Image.new("RGB", (8, 8), (40 * c, 40 * c, 40 * c))
        for i in range(train_per_class):
            image.save(tiny / "train" / w / "images" / f"{w}_{i}.JPEG")
        for _ in range(val_per_class):
            image.save(tiny / "val" / "images" / f"val_{k}.JPEG")
            lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t7\t7")
            k += 1
    (tiny / "val" / "val_annotations.txt").write_text("\n".join(reversed(lines)) + "\n")
    return tiny


def test_layout_listdir_position_is_sorted_wnid_class(tmp_path):
    tiny = fake_tiny(tmp_path)
    target = tmp_path / "work" / "data" / "miniImageNet100"
    lay = layout.build_layout(tiny, target, num_classes=4)
    assert lay.wnids == sorted(WNIDS)[:4] and not lay.reused
    for split in ("train", "validation"):
        classes = os.listdir(target / split)  # exactly how the original numbers its classes
        assert len(classes) == 4 and classes == lay.folders[split]
        for i, name in enumerate(classes):
            files = sorted(os.listdir(target / split / name))
            w = lay.wnids[i]
            if split == "train":
                assert files == [f"{w}_{k}.JPEG" for k in range(3)]
            else:
                ann = (tiny / "val" / "val_annotations.txt").read_text().splitlines()
                assert files == sorted(line.split("\t")[0] for line in ann if line.split("\t")[1] == w)
            src = tiny / "train" / w / "images" / f"{w}_0.JPEG" if split == "train" else tiny / "val" / "images" / files[0]
            assert (target / split / name / files[0]).read_bytes() == src.read_bytes()
    assert layout.build_layout(tiny, target, num_classes=4).reused


def test_layout_refuses_foreign_or_different_targets(tmp_path):
    tiny = fake_tiny(tmp_path, train_per_class=1, val_per_class=1)
    target = tmp_path / "t"
    layout.build_layout(tiny, target, num_classes=2, method="copy")
    with pytest.raises(layout.LayoutError, match=r"built from .* with 2 classes, not .* with 3"):
        layout.build_layout(tiny, target, num_classes=3)
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    with pytest.raises(layout.LayoutError, match="not built by tools.parity.layout"):
        layout.build_layout(tiny, foreign, num_classes=2)
    with pytest.raises(layout.LayoutError, match="fewer than --classes 9"):
        layout.build_layout(tiny, tmp_path / "u", num_classes=9)
    (target / "train" / os.listdir(target / "train")[0] / "extra.JPEG").write_bytes(b"")
    with pytest.raises(layout.LayoutError, match=r"holds 2 files, expected the 1 train images"):
        layout.build_layout(tiny, target, num_classes=2)
