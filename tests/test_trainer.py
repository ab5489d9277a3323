"""The host loop end to end on configs/smoke.py: outputs, exact resume, bad input."""

import json
import os

import jax
import numpy as np
import pytest

from purejax import tasks
from purejax import trainer as trainer_lib
from purejax.metrics_log import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "smoke.py")


def _run(config, task, workdir, stop_after=None):
    trainer = trainer_lib.Trainer(config, task, str(workdir), show_progress=False)
    trainer.run(stop_after=stop_after)
    return trainer


def _without_timings(records):
    return [{k: v for k, v in r.items() if "/time/" not in k} for r in records]


def test_outputs(uninterrupted):
    workdir, _ = uninterrupted
    records = read_metrics(str(workdir / "metrics.jsonl"))
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    assert "eval/accuracy" in records[0] and "eval/accuracy" in records[2] and "eval/accuracy" in records[4]
    assert "eval/accuracy" not in records[1]
    for key in (
        "train/loss",
        "train/kl_reward",
        "train/rollout/vr_accuracy",
        "train/rollout/process_reward_sum",
        "train/rollout/prm_vr_agreement",
        "train/rollout/length_correct",
        "train/rollout/truncation_ratio",
        "train/rollout/steps_mean",
        "train/rollout/frac_0_step",
        "train/rollout/frac_1_step",
        "train/rollout/repetition",
        "train/entropy",
        "train/clip_fraction",
        "train/return_mean",
        "train/advantage_std",
        "train/alarm/prm_up_vr_down",
        "train/reward/prm/mean",
        "train/reward/vr/mean",
    ):
        assert key in records[1], key
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    samples = (workdir / "samples" / "step_000002.jsonl").read_text().splitlines()
    assert json.loads(samples[0]).keys() == {"prompt", "response", "rewards"}


@pytest.mark.parametrize("interruptions", [(1,), (2,), (3,), (1, 2)])
def test_resume_equals_uninterrupted(smoke_config, task, uninterrupted, tmp_path, interruptions):
    """Killed after any step (before or after a checkpoint), then re-run: same records, same params."""
    reference_dir, reference = uninterrupted
    done = 0
    for stop_after in interruptions:
        _run(smoke_config, task, tmp_path, stop_after=stop_after - done)
        done = stop_after
    resumed = _run(smoke_config, task, tmp_path)
    assert _without_timings(read_metrics(str(tmp_path / "metrics.jsonl"))) == _without_timings(
        read_metrics(str(reference_dir / "metrics.jsonl"))
    )
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(reference.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cli_refuses_a_bad_config_before_compiling(tmp_path, capsys):
    from experiments import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["--config", SMOKE, "--workdir", str(tmp_path), "--config.advantage.temprature=0.1"])
    message = str(exit_info.value)
    assert "advantage.temprature" in message and "temperature" in message
    assert not os.listdir(tmp_path)


def test_missing_checkpoint_path_says_what_to_do(smoke_config):
    config = smoke_config.copy_and_resolve_references()
    with config.unlocked():
        config.policy.path = "/nonexistent/qwen"
    with pytest.raises(FileNotFoundError, match="Download the policy checkpoint"):
        tasks.build_task(config)


def test_early_stop_acts_on_an_alarm(smoke_config, task, tmp_path):
    # The untrained smoke policy answers in one step, which raises one_step_collapse.
    config = smoke_config.copy_and_resolve_references()
    with config.unlocked():
        config.monitor.early_stop = True
    _run(config, task, tmp_path)
    records = read_metrics(str(tmp_path / "metrics.jsonl"))
    alarmed = [r["step"] for r in records if r.get("train/alarm/one_step_collapse")]
    assert alarmed, "the smoke policy is expected to trip the one-step alarm"
    assert records[-1]["step"] == alarmed[0] < smoke_config.total_steps


def test_early_stop_follows_process_0(smoke_config, task, tmp_path, monkeypatch):
    """On a pod every process stops where process 0 does, whatever its own monitors say: here
    this process alarms at every step, process 0 (faked) never, and the run goes on to the end."""
    from purejax import distributed

    asked = []

    def process_0_saw_no_alarm(tree):
        if isinstance(tree, dict):  # the step's rewards: process 0's are this process's
            return tree
        asked.append(bool(tree))
        return np.asarray(False)

    monkeypatch.setattr(distributed, "same_on_every_process", process_0_saw_no_alarm)
    config = smoke_config.copy_and_resolve_references()
    with config.unlocked():
        config.monitor.early_stop = True
    _run(config, task, tmp_path)
    assert read_metrics(str(tmp_path / "metrics.jsonl"))[-1]["step"] == smoke_config.total_steps
    assert len(asked) == smoke_config.total_steps and any(asked)  # asked every step, and it had alarmed


def _with_seed(config, **fields):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value in fields.items():
            setattr(config, key, value)
    return config


def _assert_records_close(got, want):
    got, want = _without_timings(got), _without_timings(want)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key in g:
            if isinstance(w[key], float):
                # vmapped matmuls may round differently from the unbatched ones (~1e-7).
                np.testing.assert_allclose(g[key], w[key], rtol=1e-4, atol=1e-5, err_msg=key)
            else:
                assert g[key] == w[key], key


@pytest.mark.parametrize("seed_map", ["loop", "vmap"])
def test_grouped_seeds_equal_separate_runs(smoke_config, task, uninterrupted, tmp_path, seed_map):
    """num_seeds=2 trains seeds 0 and 1 in one run; each equals its own single-seed run (bit for
    bit with seed_map='loop', to float rounding with 'vmap'), and an interrupted multi-seed run
    resumes to the same records."""
    reference_dir, reference = uninterrupted
    seed_1 = tmp_path / "seed_1_alone"
    _run(_with_seed(smoke_config, seed=1), task, seed_1)
    group = tmp_path / "group"
    config = _with_seed(smoke_config, num_seeds=2, seed_map=seed_map)
    _run(config, task, group, stop_after=3)  # interrupted after the step-2 checkpoint
    trained = _run(config, task, group)
    assert sorted(os.listdir(group)) == ["checkpoints", "config.json", "environment.json", "seed_0", "seed_1"]
    assert (group / "seed_1" / "samples" / "step_000002.jsonl").exists()
    pairs = [(group / "seed_0", reference_dir), (group / "seed_1", seed_1)]
    if seed_map == "loop":
        for got, want in pairs:
            assert _without_timings(read_metrics(str(got / "metrics.jsonl"))) == _without_timings(
                read_metrics(str(want / "metrics.jsonl"))
            )
            assert (got / "samples" / "step_000002.jsonl").read_text() == (
                want / "samples" / "step_000002.jsonl"
            ).read_text()
        for a, b in zip(jax.tree.leaves(trained.state.params), jax.tree.leaves(reference.state.params)):
            np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[0])
        return
    for got, want in pairs:
        _assert_records_close(
            read_metrics(str(got / "metrics.jsonl")), read_metrics(str(want / "metrics.jsonl"))
        )
    for a, b in zip(jax.tree.leaves(trained.state.params), jax.tree.leaves(reference.state.params)):
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0], rtol=1e-4, atol=1e-6)


def test_finished_run_exports_an_hf_policy(uninterrupted):
    """workdir/policy is the trained policy in HF format: load_pretrained gives the same logits."""
    import jax.numpy as jnp

    from purejax.models import load_pretrained

    workdir, trainer = uninterrupted
    exported = load_pretrained(str(workdir / "policy"))
    ids = jnp.asarray(trainer.train_ids[:2])
    mask = jnp.asarray(trainer.train_mask[:2])
    np.testing.assert_allclose(
        np.asarray(exported(ids, mask)), np.asarray(trainer.policy(0)(ids, mask)), rtol=1e-6, atol=1e-6
    )
    assert json.loads((workdir / "policy" / "purejax_run.json").read_text()) == {"step": 4, "seed": 0}
    assert (workdir / "policy" / "tokenizer.json").exists()


def test_rollout_in_row_chunks_samples_each_chunk_with_its_own_key(smoke_config, task, tmp_path):
    """rollout.sample_batch = 2 of 4 rows: two sampler calls whose rows land in order, chunk
    starting at row r sampled with fold_in(key, r)."""
    from purejax.sampling import sample_seeds

    config = _with_seed(smoke_config, num_seeds=2)
    with config.unlocked():
        config.rollout.sample_batch = 2
    trainer = trainer_lib.Trainer(config, task, str(tmp_path), show_progress=False)
    _, prompt_ids, prompt_mask, out = trainer.rollout(3)
    assert out.tokens.shape == (2, 4, config.rollout.max_new_tokens)
    keys = np.stack([jax.random.fold_in(jax.random.PRNGKey(seed), 3) for seed in (0, 1)])
    for start in (0, 2):
        want = sample_seeds(
            trainer.graphdef,
            trainer.state.params,
            prompt_ids[:, start : start + 2],
            prompt_mask[:, start : start + 2],
            int(config.rollout.max_new_tokens),
            jax.vmap(jax.random.fold_in, (0, None))(keys, start),
            temperature=float(config.rollout.temperature),
            eos_token_id=trainer.eos_ids,
            pad_token_id=trainer.pad_id,
        )
        np.testing.assert_array_equal(out.tokens[:, start : start + 2], want.tokens)
        np.testing.assert_array_equal(out.mask[:, start : start + 2], want.mask)
