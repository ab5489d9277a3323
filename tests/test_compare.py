"""purejax.compare: arm configs, results from metrics files, findings, table, plot, CLI."""

import json
import os
import shutil

import numpy as np
import pytest

from purejax import compare
from purejax import config as config_lib
from purejax.metrics_log import MetricsWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def base():
    return config_lib.load(os.path.join(ROOT, "configs", "compare_credit.py"))


def test_every_arm_edits_only_credit_and_rewards(base):
    expected = {
        "pure_prm": ("soft_min", 0.1, "token_mean", {"prm"}),
        "pure_prm_vr": ("soft_min", 0.1, "token_mean", {"prm", "vr"}),
        "pure_vr": ("soft_min", 0.1, "token_mean", {"vr"}),
        "sum": ("sum", None, "token_mean", {"prm"}),
        "step_mean": ("soft_min", 0.1, "step_mean", {"prm"}),
        "min": ("min", None, "token_mean", {"prm"}),
        "worst_step": ("worst_step", None, "token_mean", {"prm"}),
        "min_vr10": ("min", None, "token_mean", {"prm", "vr"}),
        "soft_min_t0.01": ("soft_min", 0.01, "token_mean", {"prm"}),
        "soft_min_t1": ("soft_min", 1.0, "token_mean", {"prm"}),
        "pure_prm_vr100": ("soft_min", 0.1, "token_mean", {"prm", "vr"}),
    }
    assert [a.slug for a in compare.ARMS] == list(expected)
    assert [a.slug for a in compare.select_arms(None)] == list(expected)[:7]
    base_dict = base.to_dict()
    for arm in compare.ARMS:
        c = compare.arm_config(base, arm, num_seeds=3)
        credit, temperature, baseline, sources = expected[arm.slug]
        assert (c.advantage.credit, c.advantage.baseline, set(c.rewards)) == (credit, baseline, sources)
        if temperature is not None:
            assert c.advantage.temperature == temperature
        assert c.num_seeds == 3
        if "vr" in c.rewards:
            assert c.rewards.vr.fraction == (1.0 if arm.slug in ("pure_vr", "pure_prm_vr100") else 0.1)
        got = c.to_dict()
        for section in ("policy", "prm", "data", "rollout", "optim", "ppo", "eval"):
            assert got[section] == base_dict[section], (arm.slug, section)
    assert base.advantage.credit == "min" and set(base.rewards) == {"prm", "vr"}  # the base is untouched


def test_arms_keep_the_base_baseline_and_vr_settings_they_do_not_name():
    """--config.advantage.baseline and --config.rewards.vr.* reach every arm that does not set
    them itself (OpenRLHF's token_rate baseline, verl's shared VR), and the arms still set
    their own VR fraction."""
    base = config_lib.load(
        os.path.join(ROOT, "configs", "compare_credit.py"),
        ["advantage.baseline=token_rate", "rewards.vr.baseline=shared", "rewards.vr.wrong=-1.0"],
    )
    for slug, baseline, fraction in [
        ("pure_prm", "token_rate", None),
        ("pure_prm_vr", "token_rate", 0.1),
        ("pure_vr", "token_rate", 1.0),
        ("step_mean", "step_mean", None),
    ]:
        c = compare.arm_config(base, compare.ARMS_BY_SLUG[slug], num_seeds=1)
        assert c.advantage.baseline == baseline, slug
        if fraction is None:
            assert "vr" not in c.rewards, slug
        else:
            assert (c.rewards.vr.fraction, c.rewards.vr.baseline, c.rewards.vr.wrong) == (fraction, "shared", -1.0)


@pytest.mark.parametrize(
    "override, fix",
    [
        ("--config.advantage.credit=min", "--arms"),
        ("--config.advantage.temperature=1.0", "--arms"),
        ("--config.rewards.vr.fraction=0.5", "--arms"),
        ("--config.num_seeds=2", "--seeds"),
    ],
)
def test_the_scripts_refuse_an_override_the_arms_would_replace(override, fix, tmp_path):
    from experiments import anchoring_map, compare_credit

    for script in (compare_credit, anchoring_map):
        with pytest.raises(SystemExit) as exit_info:
            script.main(["--workdir", str(tmp_path / script.__name__), override])
        message = str(exit_info.value)
        assert override.split("=")[0] in message and fix in message, message
    assert not os.listdir(tmp_path)


def test_unknown_arm_names_the_choices():
    with pytest.raises(ValueError, match="unknown arm.*'sum'"):
        compare.select_arms(["summ"])


def test_a_quiet_sweep_builds_its_warm_start_quietly(base, tmp_path):
    """--quiet reaches the warm start's SFT too, not only the RL progress bars."""

    class Built(Exception):
        pass

    def build_task(config, show_progress=True):
        raise Built(show_progress)

    with pytest.raises(Built) as built:
        compare.run_sweep(base, compare.select_arms(["pure_prm"]), 1, str(tmp_path), build_task, show_progress=False)
    assert built.value.args == (False,)


def _fake_run(directory, accuracy, steps_mean, frac_1_step, alarm_at=None, n=20):
    """metrics.jsonl of a run whose curves go linearly from the first to the second value."""
    writer = MetricsWriter(str(directory), resume_step=-1, tensorboard=False, wandb_project=None, config={})
    for step in range(n + 1):
        t = step / n
        record = {
            "train/rollout/steps_mean": steps_mean[0] + t * (steps_mean[1] - steps_mean[0]),
            "train/rollout/frac_1_step": frac_1_step[0] + t * (frac_1_step[1] - frac_1_step[0]),
            "train/rollout/length_mean": 40.0,
            "train/rollout/prm_min_mean": -0.3,
            "train/rollout/vr_accuracy": 0.2,
            "train/alarm/one_step_collapse": float(alarm_at is not None and step >= alarm_at),
        }
        if step in (0, n // 2, n):
            record["eval/accuracy"] = accuracy[[0, n // 2, n].index(step)]
        writer.write(step, record if step else {"eval/accuracy": accuracy[0]})
    writer.close()


def test_results_findings_table_and_plot(tmp_path):
    runs = {
        # accuracies at steps 0, 10, 20 per seed
        "sum": [
            ((0.44, 0.2, 0.05), (4.4, 9.0), (0.0, 0.0), 6),
            ((0.44, 0.25, 0.1), (4.4, 8.0), (0.0, 0.0), 8),
        ],
        "min": [
            ((0.44, 0.52, 0.50), (4.4, 4.2), (0.0, 0.0), None),
            ((0.44, 0.50, 0.49), (4.4, 4.3), (0.0, 0.0), None),
        ],
        # PURE-PRM improves, then one seed ends 8 points below its best: 1 of 2 seeds drifted.
        "pure_prm": [
            ((0.44, 0.52, 0.44), (4.4, 3.0), (0.0, 0.3), None),
            ((0.44, 0.51, 0.50), (4.4, 4.3), (0.0, 0.0), None),
        ],
        "pure_prm_vr": [((0.44, 0.53, 0.55), (4.4, 4.3), (0.0, 0.0), None)] * 2,
        "step_mean": [((0.44, 0.1, 0.02), (4.4, 1.0), (0.0, 1.0), 5)] * 2,
    }
    for slug, seeds in runs.items():
        for s, (acc, steps_mean, frac1, alarm) in enumerate(seeds):
            _fake_run(tmp_path / slug / f"seed_{s}", acc, steps_mean, frac1, alarm)
    arms = compare.select_arms(list(runs))
    payload = compare.write_report(str(tmp_path), arms, num_seeds=2, first_seed=0)
    results = payload["results"]
    assert results["sum"]["accuracy_final"] == pytest.approx(0.075)
    assert results["sum"]["accuracy_final_std"] == pytest.approx(0.025)
    assert results["min"]["accuracy_best"] == pytest.approx(0.51)
    assert results["sum"]["alarmed_seeds"] == 2 and results["min"]["alarmed_seeds"] == 0
    # steps/answer: mean over the last 20% of the logged steps 1..20 (17..20) of a ramp 4.4 -> 9.0.
    assert results["sum"]["per_seed"][0]["steps_per_answer"] == pytest.approx(
        np.mean(4.4 + np.arange(17, 21) / 20 * 4.6)
    )
    shown = {f["finding"][:2]: f["shown"] for f in payload["findings"]}
    # 1 sum collapses, 2 min-form improves, 3 step_mean one step, 4 PURE-PRM drifts in 1 of 2
    # seeds only (not most), 5 so PURE-PRM+VR's stability (no seed drifts) is no contrast yet.
    assert shown == {"1.": True, "2.": True, "3.": True, "4.": False, "5.": False}
    assert compare.drifted_seeds(results["pure_prm"]) == 1 and compare.drifted_seeds(results["sum"]) == 2
    text = (tmp_path / "results.md").read_text()
    assert "| sum | 2 | 44.0 ± 0.0 | 7.5 ± 2.5 |" in text
    assert "NOT shown: 4. PURE-PRM eventually drifts (in most seeds) (PURE-PRM drifted in 1/2 seeds" in text
    assert "NOT shown: 5. PURE-PRM+VR stays anchored where PURE-PRM drifts (PURE-PRM+VR drifted in 0/2" in text
    assert json.loads((tmp_path / "results.json").read_text())["findings"] == payload["findings"]
    assert os.path.getsize(tmp_path / "curves.png") > 10_000


def test_finding_5_needs_a_drifting_pure_prm(tmp_path):
    # Both arms stable and tied: nothing drifts, so VR anchoring is not shown (a tie is no contrast).
    stable = [((0.44, 0.52, 0.53), (4.4, 4.3), (0.0, 0.0), None)] * 2
    for slug in ("pure_prm", "pure_prm_vr"):
        for s, (acc, steps_mean, frac1, alarm) in enumerate(stable):
            _fake_run(tmp_path / slug / f"seed_{s}", acc, steps_mean, frac1, alarm)
    payload = compare.write_report(str(tmp_path), compare.select_arms(["pure_prm", "pure_prm_vr"]), 2, 0)
    shown = {f["finding"][:2]: f["shown"] for f in payload["findings"]}
    assert shown == {"4.": False, "5.": False}
    # PURE-PRM drifting in both seeds (most) while PURE-PRM+VR holds: shown.
    drifting = [((0.44, 0.52, 0.40), (4.4, 2.0), (0.0, 0.6), None)] * 2
    for s, (acc, steps_mean, frac1, alarm) in enumerate(drifting):
        _fake_run(tmp_path / "pure_prm" / f"seed_{s}", acc, steps_mean, frac1, alarm)
    payload = compare.write_report(str(tmp_path), compare.select_arms(["pure_prm", "pure_prm_vr"]), 2, 0)
    shown = {f["finding"][:2]: f["shown"] for f in payload["findings"]}
    assert shown == {"4.": True, "5.": True}


def test_the_seed_table_pairs_arms_by_seed_and_counts_where_vr_held(tmp_path):
    # Seeds 3-5 (first_seed=3). PURE-PRM drifts in seeds 3 and 4 (8 points below best; an
    # alarm); PURE-PRM+VR drifts in seed 4 only and holds in seed 5, where PURE-PRM held:
    # held in 1 of the 2 seeds where PURE-PRM drifted, though each arm counts its own drifts.
    seeds = {
        "pure_prm": [((0.44, 0.52, 0.44), (4.4, 3.0), (0.0, 0.3), None),
                     ((0.44, 0.50, 0.49), (4.4, 1.5), (0.0, 0.8), 12),
                     ((0.44, 0.51, 0.50), (4.4, 4.3), (0.0, 0.0), None)],
        "pure_prm_vr": [((0.44, 0.53, 0.55), (4.4, 4.3), (0.0, 0.0), None),
                        ((0.44, 0.60, 0.40), (4.4, 4.3), (0.0, 0.1), None),
                        ((0.44, 0.53, 0.54), (4.4, 4.3), (0.0, 0.0), None)],
    }
    for slug, runs in seeds.items():
        for s, (acc, steps_mean, frac1, alarm) in enumerate(runs):
            _fake_run(tmp_path / slug / f"seed_{3 + s}", acc, steps_mean, frac1, alarm)
    payload = compare.write_report(str(tmp_path), compare.select_arms(list(seeds)), 3, first_seed=3)
    results = payload["results"]
    assert [s["seed"] for s in results["pure_prm"]["per_seed"]] == [3, 4, 5]
    # A collapse the run recovers from: final == best, yet the deepest dip shows it.
    assert compare.deepest_dip(np.array([0.4, 0.6, 0.2, 0.5, 0.7])) == pytest.approx(0.4)
    assert compare.held_where_drifted(results["pure_prm_vr"], results["pure_prm"]) == (1, 2)
    finding_5 = payload["findings"][-1]
    assert not finding_5["shown"] and "held in 1 of the 2 seeds where PURE-PRM drifted" in finding_5["evidence"]
    text = (tmp_path / "results.md").read_text()
    assert "| seed | PURE-PRM (soft_min T=0.1) | PURE-PRM+VR (soft_min T=0.1, 10% VR) |" in text
    # frac_1_step ramps 0 -> 0.3: the mean over steps 17..20 is 0.3 * 18.5 / 20 = 28%.
    assert "| 3 | **44.0** (best 52.0), dip 8.0, 28% 1-step | 55.0 (best 55.0), dip 0.0, 0% 1-step |" in text
    assert (
        "| 4 | **49.0** (best 50.0), dip 1.0, 74% 1-step, alarm at 12 | **40.0** (best 60.0), dip 20.0, 9% 1-step |"
        in text
    )
    # A seed only one arm ran: an empty cell, and no pair.
    shutil.rmtree(tmp_path / "pure_prm_vr" / "seed_3")
    results = compare.write_report(str(tmp_path), compare.select_arms(list(seeds)), 3, first_seed=3)["results"]
    assert compare.held_where_drifted(results["pure_prm_vr"], results["pure_prm"]) == (0, 1)
    assert "| 3 | **44.0** (best 52.0), dip 8.0, 28% 1-step |  |" in (tmp_path / "results.md").read_text()


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    from experiments import compare_credit

    with pytest.raises(SystemExit, match="unknown arm"):
        compare_credit.main(["--workdir", str(tmp_path), "--arms", "nope", "--report-only"])
    with pytest.raises(SystemExit, match="temprature"):
        compare_credit.main(["--workdir", str(tmp_path), "--config.advantage.temprature=0.1"])
    with pytest.raises(SystemExit):
        compare_credit.main(["--workdir", str(tmp_path), "--jobs", "0"])
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err


def test_finding_3_needs_pure_prm_to_keep_its_steps(tmp_path):
    # Both arms end in one-step answers: the PRM's own hack did it, not the step_mean baseline.
    collapsed = [((0.44, 0.1, 0.02), (4.4, 1.0), (0.0, 1.0), None)] * 2
    for slug in ("pure_prm", "step_mean"):
        for s, (acc, steps_mean, frac1, alarm) in enumerate(collapsed):
            _fake_run(tmp_path / slug / f"seed_{s}", acc, steps_mean, frac1, alarm)
    payload = compare.write_report(str(tmp_path), compare.select_arms(["pure_prm", "step_mean"]), 2, 0)
    found = {f["finding"][:2]: f for f in payload["findings"]}
    assert not found["3."]["shown"] and "(PURE-PRM, token_mean baseline: 92%)" in found["3."]["evidence"]
    assert found["4."]["shown"]
    # Without a PURE-PRM arm there is nothing to tell the two apart: not shown, and said why.
    alone = compare.write_report(str(tmp_path), compare.select_arms(["step_mean"]), 2, 0)["findings"]
    assert not alone[0]["shown"] and "no PURE-PRM arm" in alone[0]["evidence"]


def test_finding_2_asks_pure_prm_to_reach_pure_vr_level(tmp_path):
    """The paper's finding 2: min-form PRM credit reaches VR-level accuracy (in ~30% of the
    steps). Held-out accuracy at steps 0, 10, 20; PURE-VR ends at 0.60 in both seeds."""
    flat = ((4.4, 4.3), (0.0, 0.0))
    for s in range(2):
        _fake_run(tmp_path / "pure_vr" / f"seed_{s}", (0.44, 0.50, 0.60), *flat)
        _fake_run(tmp_path / "pure_prm" / f"seed_{s}", (0.44, 0.59, 0.61), *flat)
    arms = compare.select_arms(["pure_prm", "pure_vr"])
    found = {f["finding"][:2]: f for f in compare.write_report(str(tmp_path), arms, 2, 0)["findings"]}
    # 2 standard errors of a 2-seed mean near 0.44 on an unknown count: the 1-point floor, so 2.0.
    assert found["2."]["shown"]
    assert (
        "PURE-PRM reaches PURE-VR's final 60.0 (less 2.0) at step 10 (50% of PURE-VR's 20 steps; "
        "PURE-VR itself at step 20)" in found["2."]["evidence"]
    )
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert results["pure_prm"]["accuracy_curve"] == [[0, 0.44], [10, 0.59], [20, 0.61]]
    # PURE-PRM improving, but not to VR's level: not shown.
    for s in range(2):
        _fake_run(tmp_path / "pure_prm" / f"seed_{s}", (0.44, 0.52, 0.55), *flat)
    found = {f["finding"][:2]: f for f in compare.write_report(str(tmp_path), arms, 2, 0)["findings"]}
    assert not found["2."]["shown"] and "(less 2.0) never" in found["2."]["evidence"]
