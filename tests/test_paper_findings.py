"""purejax.paper_findings and experiments/findings.py: the regimes' configs, one summary that takes
each finding from the regime meant for it (from synthetic sweeps on disk), and the script's
refusals."""

import json
import os
import shutil

import pytest

from experiments import findings as findings_script
from purejax import compare, paper_findings
from purejax import config as config_lib
from tests.test_compare import ROOT, _fake_run

CONFIG = os.path.join(ROOT, "configs", "compare_credit.py")


def test_every_finding_has_exactly_one_regime_and_each_regime_is_the_readme_study():
    assert sorted(n for r in findings_script.REGIMES for n in r.findings) == [1, 2, 3, 4, 5]
    configs = {r.slug: config_lib.load(CONFIG, list(r.overrides)) for r in findings_script.REGIMES}
    main, giant, guess = (configs[s] for s in ("main_warm_start", "giant_step", "guess"))
    default = config_lib.load(CONFIG)
    assert main.policy.path == default.policy.path and main.total_steps == 200
    assert (giant.policy.path, giant.rewards.prm.multiline_steps) == ("builtin:arith_merged", "by_line")
    assert (giant.rewards.prm.wrong, giant.rewards.prm.unchecked, giant.total_steps) == (0.0, 0.25, 300)
    assert (guess.policy.path, guess.rewards.prm.unchecked, guess.total_steps) == ("builtin:arith_guess", -0.25, 500)
    for regime in findings_script.REGIMES:
        compare.select_arms(regime.arms)  # every arm exists


def _sweep(workdir, regime, runs):
    for slug, seeds in runs.items():
        for s, (acc, steps_mean, frac1) in enumerate(seeds):
            _fake_run(os.path.join(workdir, regime, slug, f"seed_{s}"), acc, steps_mean, frac1)


def test_the_summary_takes_each_finding_from_its_regime(tmp_path, capsys):
    workdir = str(tmp_path)
    holds = ((0.44, 0.52, 0.53), (4.4, 4.3), (0.0, 0.0))
    drifts = ((0.44, 0.52, 0.30), (4.4, 1.5), (0.0, 0.7))
    # Main warm start: sum collapses, PURE-PRM and min improve and hold, PURE-PRM to PURE-VR's
    # level (and PURE-PRM does not drift here: finding 4 from this regime would read "not shown").
    _sweep(workdir, "main_warm_start", {"sum": [((0.44, 0.2, 0.05), (4.4, 9.0), (0.0, 0.0))] * 2,
                                        "pure_prm": [holds] * 2, "min": [holds] * 2,
                                        "pure_vr": [((0.44, 0.48, 0.53), (4.4, 4.3), (0.0, 0.0))] * 2})  # fmt: skip
    # Giant step: step_mean ends in one-step answers, PURE-PRM keeps its steps.
    _sweep(workdir, "giant_step", {"step_mean": [((0.44, 0.6, 0.65), (4.4, 1.1), (0.0, 0.9))] * 2,
                                   "pure_prm": [holds] * 2})  # fmt: skip
    # Guess: PURE-PRM drifts in both seeds, PURE-PRM+VR in one of them.
    _sweep(workdir, "guess", {"pure_prm": [drifts] * 2, "pure_prm_vr": [holds, drifts]})
    rows = paper_findings.write_summary(workdir, findings_script.REGIMES, num_seeds=2, first_seed=0)
    assert [(paper_findings.finding_number(r), r["regime"], r["shown"]) for r in rows] == [
        (1, "main_warm_start", True),
        (2, "main_warm_start", True),
        (3, "giant_step", True),
        (4, "guess", True),
        (5, "guess", False),
    ]
    assert "PURE-PRM reaches PURE-VR's final 53.0 (less 2.0) at step 10 (50% of PURE-VR's 20 steps" in rows[1]["evidence"]
    assert "PURE-PRM+VR held in 1 of the 2 seeds where PURE-PRM drifted" in rows[4]["evidence"]
    text = (tmp_path / "findings.md").read_text()
    # A regime's label gives the steps its runs on disk reached (20 here), whatever the config says.
    assert "| 4. PURE-PRM eventually drifts (in most seeds) | an answer without work in support, scored -0.25, 20 steps | **yes** | PURE-PRM drifted in 2/2 seeds" in text
    assert "| 5. PURE-PRM+VR stays anchored where PURE-PRM drifts | an answer without work in support, scored -0.25, 20 steps | no |" in text
    assert json.loads((tmp_path / "findings.json").read_text())["findings"] == rows
    assert os.path.getsize(tmp_path / "findings.png") > 20_000
    # Each regime keeps its own report.
    assert (tmp_path / "guess" / "results.md").exists() and (tmp_path / "giant_step" / "curves.png").exists()

    # The script rebuilds the same from disk: --regimes picks what runs, the summary covers
    # every regime on disk.
    capsys.readouterr()
    findings_script.main(["--workdir", workdir, "--report-only", "--seeds", "2", "--regimes", "giant_step"])
    assert (tmp_path / "findings.md").read_text() == text
    shutil.rmtree(tmp_path / "guess")
    findings_script.main(["--workdir", workdir, "--report-only", "--seeds", "2"])
    text = (tmp_path / "findings.md").read_text()
    assert "| 3. step_mean drives answers to a single step |" in text and "| 4. " not in text


def test_the_script_refuses_bad_input(tmp_path, capsys):
    workdir = str(tmp_path)
    with pytest.raises(SystemExit, match="no runs under"):
        findings_script.main(["--workdir", workdir, "--report-only"])
    with pytest.raises(SystemExit, match=r"unknown regime\(s\) \['nope'\]; choose from \['main_warm_start'"):
        findings_script.main(["--workdir", workdir, "--report-only", "--regimes", "nope"])
    with pytest.raises(SystemExit, match="every arm of the comparison sets it itself"):
        findings_script.main(["--workdir", workdir, "--report-only", "--config.advantage.credit=sum"])
    with pytest.raises(SystemExit):
        findings_script.main(["--workdir", workdir, "--seeds", "0"])
    assert "--seeds must be >= 1" in capsys.readouterr().err
