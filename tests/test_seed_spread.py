"""experiments/seed_spread.py: the gains table and its argument checks (the runs are the trainer's)."""

import pytest

from experiments import seed_spread


def test_gains_table_reports_every_run_the_mean_and_the_worst():
    rows = [(0, 0, 0.5, 0.7), (0, 1, 0.5, 0.65), (1, 0, 0.4, 0.42)]
    text = seed_spread.gains_table(rows)
    assert "| 0 | 1 | 0.500 | 0.650 | +15.0 |" in text
    assert "| 1 | 0 | 0.400 | 0.420 | +2.0 |" in text
    assert "mean gain +12.3 points, worst +2.0, over 3 runs" in text


def test_bad_arguments_fail_before_training(tmp_path):
    with pytest.raises(SystemExit):
        seed_spread.main(["--workdir", str(tmp_path), "--seeds", "0"])
    with pytest.raises(SystemExit, match="temprature"):
        seed_spread.main(["--workdir", str(tmp_path), "--config.advantage.temprature=0.1"])
