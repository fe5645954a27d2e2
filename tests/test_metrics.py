"""ACC, BWT, forgetting and incremental accuracy on hand-computed accuracy matrices."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cldst.method import metrics as M

N = None

A3 = [[90, N, N],
      [80, 70, N],
      [60, 65, 50]]
# ACC = (60 + 65 + 50)/3 = 175/3 = 58.333…
# BWT = ((60 − 90) + (65 − 70))/2 = (−30 − 5)/2 = −17.5
# F   = ((max(90, 80) − 60) + (70 − 65))/2 = (30 + 5)/2 = 17.5
# inc = [60, (60+65)/2 = 62.5, 175/3]

A3_LATE_MAX = [[70, N, N],
               [85, 60, N],  # task 0 got better after task 1: max earlier value is not the diagonal
               [50, 55, 40]]
# ACC = (50 + 55 + 40)/3 = 145/3 = 48.333…
# BWT = ((50 − 70) + (55 − 60))/2 = −12.5
# F   = ((85 − 50) + (60 − 55))/2 = (35 + 5)/2 = 20.0  ≠ −BWT

A4 = [[80, N, N, N],
      [75, 90, N, N],
      [82, 85, 70, N],
      [60, 80, 65, 75]]
# ACC = (60 + 80 + 65 + 75)/4 = 280/4 = 70
# BWT = ((60 − 80) + (80 − 90) + (65 − 70))/3 = −35/3 = −11.666…
# F   = ((max(80,75,82) − 60) + (max(90,85) − 80) + (70 − 65))/3 = (22 + 10 + 5)/3 = 37/3 = 12.333…
# inc = [60, 70, 205/3 = 68.333…, 70]


def test_three_tasks():
    assert M.average_accuracy(A3) == pytest.approx(175 / 3, rel=1e-12)
    assert M.backward_transfer(A3) == pytest.approx(-17.5, rel=1e-12)
    assert M.forgetting(A3) == pytest.approx(17.5, rel=1e-12)
    assert M.incremental_accuracy(A3) == pytest.approx([60, 62.5, 175 / 3], rel=1e-12)
    assert M.summary(A3) == pytest.approx({"acc": 175 / 3, "bwt": -17.5, "forgetting": 17.5}, rel=1e-12)


def test_forgetting_uses_best_earlier_value():
    assert M.average_accuracy(A3_LATE_MAX) == pytest.approx(145 / 3, rel=1e-12)
    assert M.backward_transfer(A3_LATE_MAX) == pytest.approx(-12.5, rel=1e-12)
    assert M.forgetting(A3_LATE_MAX) == pytest.approx(20.0, rel=1e-12)
    assert M.forgetting(A3_LATE_MAX) != pytest.approx(-M.backward_transfer(A3_LATE_MAX))


def test_four_tasks():
    assert M.average_accuracy(A4) == pytest.approx(70.0, rel=1e-12)
    assert M.backward_transfer(A4) == pytest.approx(-35 / 3, rel=1e-12)
    assert M.forgetting(A4) == pytest.approx(37 / 3, rel=1e-12)
    assert M.incremental_accuracy(A4) == pytest.approx([60, 70, 205 / 3, 70], rel=1e-12)


def test_positive_backward_transfer():
    a = [[50, N], [70, 60]]
    # BWT = 70 − 50 = 20; F = 50 − 70 = −20 (not clipped); ACC = 65
    assert M.backward_transfer(a) == pytest.approx(20.0, rel=1e-12)
    assert M.forgetting(a) == pytest.approx(-20.0, rel=1e-12)
    assert M.average_accuracy(a) == pytest.approx(65.0, rel=1e-12)


def test_single_task():
    a = [[77.5]]
    assert M.average_accuracy(a) == 77.5
    assert M.backward_transfer(a) == 0.0
    assert M.forgetting(a) == 0.0
    assert M.incremental_accuracy(a) == [77.5]


def test_numpy_input_with_nan():
    a = M.as_matrix(A4)
    assert M.summary(a) == pytest.approx(M.summary(A4), rel=1e-12)


@pytest.mark.parametrize("a", [A3, A3_LATE_MAX, A4, [[77.5]]])
def test_json_round_trip(a):
    m = M.as_matrix(a)
    assert m.dtype == float and m.shape == (len(a), len(a))
    assert np.isnan(m[np.triu_indices(len(a), 1)]).all()
    j = M.to_json_matrix(m)
    assert j == a  # None above the diagonal, numbers below and on it
    assert all(v is None or type(v) is float for row in j for v in row)
    back = json.loads(json.dumps(j))  # null in JSON
    assert "NaN" not in json.dumps(j)
    assert M.to_json_matrix(M.as_matrix(back)) == j
    assert all(math.isnan(x) == (y is None) for row_m, row_j in zip(m, back, strict=True) for x, y in zip(row_m, row_j, strict=True))
