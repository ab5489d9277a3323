"""purejax.anchoring and experiments/anchoring_map.py: the onset of the one-step takeover and
the hack's margin computed from hand-written metric records, the map's table and files from
a synthetic sweep on disk, and the script's refusals."""

import json
import math
import os

import pytest

from experiments import anchoring_map
from purejax import anchoring, compare


def _records(one_step, worst_step, accuracy):
    """metrics.jsonl records: per-step rollout metrics, held-out accuracy every 10 steps."""
    out = []
    for step, (f, w) in enumerate(zip(one_step, worst_step), start=1):
        record = {"step": step, anchoring.ONE_STEP: f, anchoring.WORST_STEP: w}
        if step % 10 == 0 and accuracy:
            record["eval/accuracy"] = accuracy.pop(0)
        out.append(record)
    return out


def test_onset_is_the_first_step_at_half_one_step_answers():
    records = _records([0.0, 0.2, 0.49, 0.5, 0.1, 0.9], [0.0] * 6, [])
    assert anchoring.onset_step(records) == 4
    assert anchoring.onset_step(records, threshold=0.8) == 6
    assert anchoring.onset_step(records[:3]) is None


def test_the_early_worst_step_averages_the_first_steps_only():
    worst = [-0.5] * 20 + [0.9] * 30
    records = _records([0.0] * 50, worst, [])
    assert anchoring.early_worst_step(records) == pytest.approx(-0.5)
    assert anchoring.early_worst_step(records, steps=25) == pytest.approx((20 * -0.5 + 5 * 0.9) / 25)
    assert math.isnan(anchoring.early_worst_step([{"step": 1}]))


def _write_sweep(workdir, score, arm, runs):
    for seed, records in enumerate(runs):
        d = os.path.join(anchoring.score_dir(workdir, score), arm, f"seed_{seed}")
        os.makedirs(d)
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)


def test_the_map_from_a_sweep_on_disk(tmp_path):
    """Guess score 0.9: both seeds drift (onsets 12 and 15); score -0.4: one seed never does.
    Margin = score - the early worst-step reward (-0.45 here)."""
    early = [-0.45] * 20
    drift = lambda at: _records([0.0] * (at - 1) + [0.6] * (30 - at + 1), early + [0.9] * 10, [0.55, 0.6, 0.03])
    stay = _records([0.0] * 30, early + [0.1] * 10, [0.55, 0.62, 0.66])
    workdir = str(tmp_path)
    _write_sweep(workdir, 0.9, "pure_prm", [drift(12), drift(15)])
    _write_sweep(workdir, -0.4, "pure_prm", [drift(25), stay])
    arms = compare.select_arms(["pure_prm", "pure_prm_vr"])  # no pure_prm_vr runs: left out
    rows = anchoring.write_map(workdir, [0.9, -0.4], arms, num_seeds=2)
    assert [(r["score"], r["drifted"]) for r in rows] == [(0.9, 2), (-0.4, 1)]
    assert [s["onset"] for s in rows[0]["per_seed"]] == [12, 15]
    assert rows[0]["margin"] == pytest.approx(0.9 + 0.45)
    assert rows[1]["per_seed"][1] == {"onset": None, "steps": 30, "best": 0.66, "final": 0.66, "dip": 0.0,
                                      "early_worst_step": pytest.approx(-0.45)}  # fmt: skip
    text = open(os.path.join(workdir, "map.md")).read()
    assert "| +0.90 | +1.35 | PURE-PRM (soft_min T=0.1) | 2 of 2 (in 30 steps) | 12 / 15 | 60.0 (worst 60.0) | 57.0 (worst 57.0) | 3.0 (worst 3.0) |" in text
    # The deepest dip's worst seed is the largest: 57 points (the drifting seed), not 0.
    assert "| -0.40 | +0.05 | PURE-PRM (soft_min T=0.1) | 1 of 2 (in 30 steps) | 25 / none | 63.0 (worst 60.0) | 28.5 (worst 57.0) |" in text
    assert json.load(open(os.path.join(workdir, "map.json")))[0]["per_seed"][1]["onset"] == 15
    assert os.path.getsize(os.path.join(workdir, "map.png")) > 10_000


def test_the_script_rebuilds_the_map_and_refuses_bad_input(tmp_path, capsys):
    workdir = str(tmp_path)
    with pytest.raises(SystemExit, match="no runs under"):
        anchoring_map.main(["--workdir", workdir, "--report-only", "--scores", "0.5"])
    single = os.path.join(anchoring.score_dir(workdir, 0.5), "pure_prm")  # one seed: no seed_N folder
    os.makedirs(single)
    with open(os.path.join(single, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in _records([0.0, 0.7], [-0.4, 0.9], []))
    anchoring_map.main(["--workdir", workdir, "--report-only", "--scores", "0.5", "--arms", "pure_prm", "--seeds", "1"])
    assert "| +0.50 | +0.25 | PURE-PRM (soft_min T=0.1) | 1 of 1 (in 2 steps) | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        anchoring_map.main(["--workdir", workdir, "--scores", "1.5"])
    assert "--scores must lie in [-1, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown arm"):
        anchoring_map.main(["--workdir", workdir, "--report-only", "--arms", "nope"])
