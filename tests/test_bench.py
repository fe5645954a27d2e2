"""`cldst bench` runs and prints its table (a smoke test: the numbers are the bench's job, not a test's)."""

import pytest

from cldst.cli import main


@pytest.mark.slow
def test_bench_prints_every_column(capsys):
    assert main(["bench", "--width", "0.125", "--repeats", "1", "--steps", "1", "--archs", "mobilenetv2",
                 "--epoch-batches", "2", "--epoch-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| mobilenetv2 | 64 |" in out and "DST / dense" in out and "median of pairs" in out
    assert "cldst / DataLoader" in out and "data path alone" in out
    for rule in ("random", "unfired", "gradient", "momentum"):
        assert f"update, {rule} (s)" in out


def test_bench_rejects_a_zero_repeat_count_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--repeats", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "expected a whole number ≥ 1, got '0'" in err and "Traceback" not in err
