"""Read the original's log and cldst's run folder into the same numbers, and tabulate them.

Pure functions: no training, no torch. Every parse error is one ``ParseError`` naming the file.
Tasks and epochs are 0-based in the data and 1-based in the tables.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

ORIGINAL, CLDST = "original", "cldst"
SIDES = (ORIGINAL, CLDST)
_EPOCH = re.compile(r"^PARITY epoch (.*)$", re.M)
_TOKEN = re.compile(r"\[|\]|[^\s\[\]]+")


class ParseError(ValueError):
    """One line: which file, what was expected."""


@dataclass
class RunResult:
    source: str
    epochs: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)  # (task, epoch): (loss, acc)
    matrix: list[list[float]] | None = None  # A[i][j] in %, accuracy on task j after task i
    incremental: list[float] | None = None
    average_bwt: float | None = None

    @property
    def final_row(self) -> list[float] | None:
        return self.matrix[-1] if self.matrix else None


def _number(token: str, where: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ParseError(f"{where}: {what} holds {token!r}, not a number") from None


def _array_after(text: str, header: str, where: str) -> list:
    """The numpy-printed array (nested lists of floats) after the line ``header``, over several lines."""
    starts = [m.end() for m in re.finditer(rf"^{re.escape(header)}[ \t]*$", text, re.M)]
    if not starts:
        raise ParseError(f"{where}: no '{header}' line: the original did not finish (see its last lines)")
    if len(starts) > 1:
        raise ParseError(f"{where}: '{header}' is printed {len(starts)} times: the log holds more than one run")
    stack: list[list] = []
    for m in _TOKEN.finditer(text, starts[0]):
        tok = m.group()
        if tok == "[":
            stack.append([])
        elif tok == "]":
            if not stack:
                break
            done = stack.pop()
            if not stack:
                return done
            stack[-1].append(done)
        elif not stack:
            break
        elif tok == "...":
            raise ParseError(f"{where}: '{header}' is summarised by numpy ('...'); print it in full")
        else:
            stack[-1].append(_number(tok, where, header))
    raise ParseError(f"{where}: '{header}' is not followed by a complete bracketed array")


def _scalar_after(text: str, header: str, where: str) -> float | None:
    m = re.search(rf"^{re.escape(header)}[ \t]*\n\s*(\S+)", text, re.M)
    return None if m is None else _number(m.group(1), where, header)


def parse_original_log(text: str, where: str = "log.txt", require_final: bool = True) -> RunResult:
    """The PARITY epoch lines and the final ACCURACY MATRIX / INCREMENTAL ACCURACY / Average BWT."""
    result = RunResult(where)
    for m in _EPOCH.finditer(text):
        fields = dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
        if not {"task", "epoch", "loss", "acc"} <= fields.keys():
            raise ParseError(f"{where}: {m.group()!r} lacks one of task=, epoch=, loss=, acc=")
        key = (int(fields["task"]), int(fields["epoch"]))
        if key in result.epochs:
            raise ParseError(f"{where}: task {key[0]} epoch {key[1]} is reported twice: more than one run?")
        result.epochs[key] = (_number(fields["loss"], where, "loss"), _number(fields["acc"], where, "acc"))
    if not require_final and "ACCURACY MATRIX:" not in text:
        return result
    matrix = _array_after(text, "ACCURACY MATRIX:", where)
    if not matrix or any(not isinstance(r, list) or len(r) != len(matrix) for r in matrix):
        raise ParseError(f"{where}: ACCURACY MATRIX is not a square 2-D array")
    result.matrix = matrix
    inc = _array_after(text, "INCREMENTAL ACCURACY:", where)
    if any(isinstance(v, list) for v in inc) or len(inc) != len(matrix):
        raise ParseError(f"{where}: INCREMENTAL ACCURACY is not a 1-D array of {len(matrix)} values")
    result.incremental = inc
    result.average_bwt = _scalar_after(text, "Average BWT:", where)
    return result


def parse_cldst_run(folder: str | Path) -> RunResult:
    """history.csv's epoch rows and, if the run finished, metrics.json's matrix and metrics."""
    folder = Path(folder)
    history, metrics_path = folder / "history.csv", folder / "metrics.json"
    result = RunResult(str(folder))
    if not history.is_file():
        raise ParseError(f"{history}: missing: not a cldst run folder, or the run has not finished an epoch")
    with history.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"kind", "task", "epoch", "loss", "train_acc"} - set(reader.fieldnames or ())
        if missing:
            raise ParseError(f"{history}: no column {', '.join(sorted(missing))}")
        for row in reader:
            if row["kind"] == "epoch":
                key = (int(row["task"]), int(row["epoch"]))
                result.epochs[key] = (_number(row["loss"], str(history), "loss"),
                                      _number(row["train_acc"], str(history), "train_acc"))
    if not metrics_path.is_file():
        return result
    try:
        metrics = json.loads(metrics_path.read_text())
        matrix = [[math.nan if v is None else float(v) for v in r] for r in metrics["acc_matrix"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ParseError(f"{metrics_path}: no readable acc_matrix ({type(e).__name__}: {e})") from None
    result.matrix = matrix
    ref = metrics.get("reference_metrics") or {}
    result.incremental = ref.get("incremental accuracy") or \
        [statistics.fmean(matrix[-1][: i + 1]) for i in range(len(matrix))]
    result.average_bwt = ref.get("Average BWT")
    return result


# ---------------------------------------------------------------------------------------- tables
def _stats(values: list[float]) -> tuple[float, float | None] | None:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(s: tuple[float, float | None] | None, digits: int) -> str:
    if s is None:
        return "—"
    return f"{s[0]:.{digits}f}" + ("" if s[1] is None else f" ± {s[1]:.{digits}f}")


def _gap(a: tuple | None, b: tuple | None, digits: int) -> str:
    return "—" if a is None or b is None else f"{b[0] - a[0]:+.{digits}f}"


Runs = dict[int, dict[str, RunResult | None]]  # seed -> side -> result


def epoch_rows(runs: Runs) -> list[dict]:
    """Per (task, epoch): loss and training accuracy of each side, as (mean, sd or None) over seeds."""
    keys = sorted({k for by_side in runs.values() for r in by_side.values() if r for k in r.epochs})
    rows = []
    for key in keys:
        row: dict = {"task": key[0], "epoch": key[1]}
        for side in SIDES:
            got = [r.epochs[key] for by_side in runs.values() if (r := by_side.get(side)) and key in r.epochs]
            row[f"loss_{side}"] = _stats([g[0] for g in got])
            row[f"acc_{side}"] = _stats([g[1] for g in got])
        rows.append(row)
    return rows


def final_rows(runs: Runs) -> list[dict]:
    """Per task j: the final model's accuracy A[T-1][j] of each side over seeds, then the final
    incremental accuracy and Average BWT."""
    finals = {side: [r for by_side in runs.values() if (r := by_side.get(side)) and r.matrix] for side in SIDES}
    tasks = max((len(r.matrix) for rs in finals.values() for r in rs), default=0)
    rows = []
    for j in range(tasks):
        rows.append({"what": f"task {j + 1}", **{side: _stats([r.final_row[j] for r in finals[side]
                                                                 if len(r.matrix) > j]) for side in SIDES}})
    rows.append({"what": "incremental accuracy (final)",
                 **{side: _stats([r.incremental[-1] for r in finals[side] if r.incremental]) for side in SIDES}})
    rows.append({"what": "Average BWT", **{side: _stats([r.average_bwt for r in finals[side]
                                                         if r.average_bwt is not None]) for side in SIDES}})
    return rows


def mean_matrix(results: list[RunResult]) -> list[list[float]] | None:
    ms = [r.matrix for r in results if r.matrix]
    if not ms or any(len(m) != len(ms[0]) for m in ms):
        return ms[0] if ms else None
    return [[statistics.fmean(m[i][j] for m in ms) for j in range(len(ms[0]))] for i in range(len(ms[0]))]


def _matrix_table(m: list[list[float]] | None) -> list[str]:
    if m is None:
        return ["(no accuracy matrix: the run has not finished)"]
    head = "| after task \\ on task | " + " | ".join(str(j + 1) for j in range(len(m))) + " |"
    lines = [head, "|---" * (len(m) + 1) + "|"]
    lines += [f"| {i + 1} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for i, row in enumerate(m)]
    return lines


def render_markdown(runs: Runs, settings: str = "") -> str:
    seeds = sorted(runs)
    over = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± sd over seeds {', '.join(map(str, seeds))}"
    out = ["# Parity: the original code vs cldst --protocol reference", ""]
    if settings:
        out += [settings, ""]
    out += [f"## Training, per task and epoch ({over})", "",
            "| task | epoch | loss original | loss cldst | Δ loss | train acc original (%) | "
            "train acc cldst (%) | Δ acc |", "|---|---|---|---|---|---|---|---|"]
    for r in epoch_rows(runs):
        lo, lc, ao, ac = r["loss_original"], r["loss_cldst"], r["acc_original"], r["acc_cldst"]
        out.append(f"| {r['task'] + 1} | {r['epoch'] + 1} | {_fmt(lo, 4)} | {_fmt(lc, 4)} | {_gap(lo, lc, 4)} | "
                   f"{_fmt(ao, 2)} | {_fmt(ac, 2)} | {_gap(ao, ac, 2)} |")
    for side in SIDES:
        results = [r for by_side in runs.values() if (r := by_side.get(side))]
        what = over if len(seeds) == 1 else f"mean over seeds {', '.join(map(str, seeds))}"
        out += ["", f"## Accuracy matrix, {side} (%, {what})", ""]
        out += _matrix_table(mean_matrix(results)) if results else ["(not run)"]
    out += ["", f"## Final model, per task: A[T-1][j] (%, {over})", "",
            "| | original | cldst | gap (cldst − original) |", "|---|---|---|---|"]
    for r in final_rows(runs):
        out.append(f"| {r['what']} | {_fmt(r[ORIGINAL], 2)} | {_fmt(r[CLDST], 2)} | "
                   f"{_gap(r[ORIGINAL], r[CLDST], 2)} |")
    return "\n".join(out) + "\n"


def to_json(runs: Runs, settings: dict | None = None) -> dict:
    def one(r: RunResult | None) -> dict | None:
        if r is None:
            return None
        matrix = None if r.matrix is None else [[None if math.isnan(v) else v for v in row] for row in r.matrix]
        return {"source": r.source, "matrix": matrix, "incremental": r.incremental, "average_bwt": r.average_bwt,
                "epochs": [{"task": t, "epoch": e, "loss": lv, "acc": av} for (t, e), (lv, av) in sorted(r.epochs.items())]}

    def stat(s: tuple | None) -> dict | None:
        return None if s is None else {"mean": s[0], "sd": s[1]}

    return {"settings": settings or {},
            "seeds": {str(s): {side: one(by_side.get(side)) for side in SIDES} for s, by_side in sorted(runs.items())},
            "final": [{"what": r["what"], **{side: stat(r[side]) for side in SIDES}} for r in final_rows(runs)]}
