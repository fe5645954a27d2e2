"""`cldst bench` runs and prints its table (a smoke test: the numbers are the bench's job, not a test's)."""

from cldst.cli import main


def test_bench_prints_every_column(capsys):
    assert main(["bench", "--width", "0.125", "--repeats", "1", "--steps", "1", "--archs", "mobilenetv2"]) == 0
    out = capsys.readouterr().out
    assert "| mobilenetv2 | 64 |" in out and "DST / dense" in out and "cldst / DataLoader" in out
    for rule in ("random", "unfired", "gradient", "momentum"):
        assert f"update, {rule} (s)" in out
