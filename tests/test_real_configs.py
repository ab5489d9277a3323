"""The paper's nine real configs carry PURE_SPEC §7's hyperparameters and fail clearly without checkpoints;
the three OpenRLHF-branch configs carry that branch's settings."""

import os

import numpy as np
import pytest

from purejax import config as config_lib
from purejax import model_paths
from purejax import tasks

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
MODELS = {  # config prefix -> (HF repo of the policy, total steps): PURE_SPEC §7
    "qwen25_math_7b": ("Qwen/Qwen2.5-Math-7B", 500),
    "qwen25_math_1_5b": ("Qwen/Qwen2.5-Math-1.5B", 500),
    "qwen25_7b": ("Qwen/Qwen2.5-7B", 1000),
}
RUNS = {"prm": 5e-7, "vr": 1e-6, "prm_vr": 1e-6}  # PURE_SPEC §7 learning rates
ALL = [(m, r) for m in MODELS for r in RUNS]


def _load(model, run, overrides=None):
    return config_lib.load(os.path.join(CONFIGS, f"{model}_{run}.py"), overrides)


@pytest.mark.parametrize("model,run", ALL)
def test_config_has_the_papers_hyperparameters(model, run):
    c = _load(model, run)  # load() validates and locks
    repo, steps = MODELS[model]
    assert c.optim.lr == RUNS[run] and c.optim.schedule == "constant" and c.optim.grad_clip == 1.0
    assert c.total_steps == steps and c.checkpoint_every == 50
    assert (c.rollout.prompts_per_step, c.rollout.samples_per_prompt) == (64, 8)
    assert c.ppo.epochs == 1 and c.ppo.minibatches == 1  # one gradient step per rollout
    assert c.rollout.temperature == 1.0
    assert c.rollout.max_prompt_len + c.rollout.max_new_tokens == 8192
    assert (c.ppo.kl_beta, c.ppo.kl_estimator, c.ppo.kl_in) == (1e-3, "k3", "reward")
    assert c.ppo.clip_eps_low == c.ppo.clip_eps_high == 0.2
    assert (c.advantage.credit, c.advantage.temperature) == ("soft_min", 0.1)
    assert c.eval.max_new_tokens == 3000
    assert model_paths.hf_repo_for(c.policy.path) == repo
    # $PUREJAX_MODELS/NAME when that is set, else the Hub id (resolved from the HF cache).
    name = repo.split("/")[1]
    assert c.policy.path == (os.path.join(model_paths.MODELS_DIR, name) if model_paths.MODELS_DIR else repo)
    assert not c.data.chat_template  # the paper's Qwen2.5-Math template
    assert c.data.prompt_template.startswith("<|im_start|>system\nPlease reason step by step")
    assert model_paths.hf_repo_for(c.prm.path) == "jinachris/PURE-PRM-7B"
    assert sorted(c.rewards) == sorted({"prm": ["prm"], "vr": ["vr"], "prm_vr": ["prm", "vr"]}[run])
    if "prm" in c.rewards:
        assert (c.rewards.prm.type, c.rewards.prm.level) == ("prm", "step")
    if "vr" in c.rewards:
        vr = c.rewards.vr
        # ~10% of the prompts: every prompt with a ground truth (879 of 8,523), the paper's own RLOO.
        assert (vr.type, vr.applies_to, vr.fraction, vr.baseline) == (
            "verifiable",
            "with_answer",
            1.0,
            "rloo",
        )
        assert (vr.correct, vr.wrong) == (1.0, 0.0)


def test_configs_are_locked_and_overridable():
    c = _load("qwen25_math_7b", "prm_vr", ["rewards.vr.baseline=shared", "policy.path=/x"])
    assert c.rewards.vr.baseline == "shared" and c.policy.path == "/x"
    with pytest.raises(AttributeError):
        c.optim.learning_rate = 1.0


@pytest.mark.parametrize("run", list(RUNS))
def test_openrlhf_configs_have_the_official_main_branch_settings(run):
    """configs/qwen25_math_7b_<run>_openrlhf.py: the README table's `main` rows (train_pure.sh and
    train_pure_ray.py's defaults), everything else as the verl-based paper config."""
    c = _load("qwen25_math_7b", f"{run}_openrlhf")
    paper = _load("qwen25_math_7b", run)
    assert (c.rollout.prompts_per_step, c.rollout.samples_per_prompt, c.rollout.temperature) == (64, 4, 0.5)
    assert (c.rollout.max_prompt_len, c.rollout.max_new_tokens) == (1024, 2048)
    assert c.advantage.baseline == "token_rate"
    assert (c.advantage.credit, c.advantage.temperature) == ("soft_min", 0.1)
    assert c.advantage.zero_step_ends and c.advantage.whiten and c.advantage.discount == 1.0
    assert (c.ppo.epochs, c.ppo.minibatches, c.ppo.micro_batches) == (1, 2, 64)  # 128 per update, 2 per pass
    assert (c.ppo.loss_agg, c.ppo.ratio_guard, c.ppo.clip_eps_low, c.ppo.clip_eps_high) == (
        "seq-mean-token-mean", 10.0, 0.2, 0.2
    )
    assert (c.ppo.kl_estimator, c.ppo.kl_beta, c.ppo.kl_in) == ("k1", 1e-3, "reward")
    assert (c.optim.lr, c.optim.schedule, c.optim.warmup_steps) == (5e-7, "constant", 0)
    assert (c.optim.beta1, c.optim.beta2, c.optim.weight_decay, c.optim.grad_clip) == (0.9, 0.95, 0.0, 1.0)
    assert sorted(c.rewards) == sorted(paper.rewards)
    if "vr" in c.rewards:
        assert (c.rewards.vr.correct, c.rewards.vr.wrong, c.rewards.vr.baseline) == (0.0, -1.0, "rloo")
    for section in ("policy", "prm", "data", "eval", "mesh"):
        assert c[section].to_dict() == paper[section].to_dict(), section


def test_the_openrlhf_config_trains_on_tiny_hf_checkpoints(tmp_path):
    """configs/qwen25_math_7b_prm_vr_openrlhf.py, shrunk by overrides only, trains end to end on
    tiny HF checkpoints: token_rate with masked step ends, the ratio guard per pass, k1."""
    from purejax.metrics_log import read_metrics
    from tests import _paper_run_worker as worker

    _tiny_paper_run_root(tmp_path)
    worker.run(str(tmp_path), str(tmp_path / "run"), config_file="qwen25_math_7b_prm_vr_openrlhf.py")
    records = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(np.isfinite(r["train/loss"]) and r["train/skipped"] == 0.0 for r in records[1:])
    assert os.path.isfile(tmp_path / "run" / "policy" / "model.safetensors")


def _tiny_paper_run_root(tmp_path):
    """tmp_path/policy, prm (tiny HF checkpoints with tokenizers) and train.json (PURE rows)."""
    import json

    from purejax import data
    from tests._tiny_hf import build_tiny_tokenizer, save_tiny_hf

    questions = [p for p in data.load_train_prompts() if p.answer is not None][:6]
    corpus = [p.question for p in questions] + [p.question for p in data.load_benchmark("math500")[:4]]
    corpus += ["So x = 2.\n\nThen \\boxed{5}.\n\n", "\n\n"] * 30
    policy = save_tiny_hf(tmp_path / "policy", "qwen2_gqa", vocab_size=352)
    build_tiny_tokenizer(policy, texts=corpus, vocab_size=320)
    prm = save_tiny_hf(tmp_path / "prm", "qwen2_gqa", head="classifier", vocab_size=352, seed=1)
    build_tiny_tokenizer(prm, texts=corpus, vocab_size=320)
    rows = [{"question": p.question, "answer": p.answer, "ref_answer": p.answer} for p in questions]
    (tmp_path / "train.json").write_text(json.dumps(rows))


@pytest.mark.parametrize(
    "model,run", [("qwen25_math_7b", "prm_vr"), ("qwen25_math_1_5b", "vr"), ("qwen25_7b", "prm")]
)
def test_missing_policy_names_the_field_and_the_hf_repo(model, run, tmp_path):
    c = _load(model, run, [f"policy.path={tmp_path / MODELS[model][0].split('/')[1]}"])
    with pytest.raises(FileNotFoundError) as error:
        tasks.build_task(c)
    message = str(error.value)
    assert "config.policy.path" in message and MODELS[model][0] in message
    assert "--config.policy.path=" in message and "PUREJAX_MODELS" in message


def test_missing_prm_is_reported_before_loading_the_policy(tmp_path):
    from tests._tiny_hf import save_tiny_hf

    policy = save_tiny_hf(tmp_path / "Qwen2.5-Math-7B", "qwen2_gqa")
    c = _load("qwen25_math_7b", "prm", [f"policy.path={policy}", f"prm.path={tmp_path / 'PURE-PRM-7B'}"])
    with pytest.raises(FileNotFoundError) as error:
        tasks.build_task(c)
    message = str(error.value)
    assert "config.prm.path" in message and "jinachris/PURE-PRM-7B" in message
    assert "--config.prm.path=" in message


def test_a_directory_without_config_json_is_refused(tmp_path):
    (tmp_path / "Qwen2.5-7B").mkdir()
    c = _load("qwen25_7b", "vr", [f"policy.path={tmp_path / 'Qwen2.5-7B'}"])
    with pytest.raises(FileNotFoundError, match=r"has no config.json.*Qwen/Qwen2.5-7B"):
        tasks.build_task(c)


def test_missing_data_file_names_the_field(tmp_path):
    from tests._tiny_hf import save_tiny_hf

    policy = save_tiny_hf(tmp_path / "policy", "qwen2_gqa")
    c = _load("qwen25_math_7b", "vr", [f"policy.path={policy}", f"data.train_path={tmp_path / 'none.json'}"])
    with pytest.raises(FileNotFoundError, match=r"config.data.train_path=.*--config.data.train_path=FILE"):
        tasks.build_task(c)


def test_an_unknown_path_keeps_the_generic_advice(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.policy.path='/nonexistent/x'.*Download the policy"):
        model_paths.require_checkpoint_dir("/nonexistent/x", "policy.path", "the policy checkpoint")
    # A bare HF repo id as the path (the configs' default) is recognised too; offline, from an empty cache.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"`hf download Qwen/Qwen2.5-Math-7B`"):
        model_paths.require_checkpoint_dir("Qwen/Qwen2.5-Math-7B", "policy.path", "the policy checkpoint")


def test_a_paper_config_trains_on_tiny_hf_checkpoints_on_one_device_and_on_a_mesh(tmp_path):
    """configs/qwen25_math_7b_prm_vr.py, shrunk by overrides only, trains end to end on tiny HF
    checkpoints (policy + PRM + tokenizer) and the PURE data format: the real-model path of
    build_task (weights loaded to the host, then placed), with micro-batches, logit chunks,
    remat, sampler and PRM row chunks. Sharded over 8 simulated devices (mesh 1 x 2 x 4, a
    subprocess), every metric matches the one-device run, and its steps run no op-by-op
    primitive on a sharded array (tests/_eager_ops.py: on a pod each is a program of its own,
    and dozens in flight hung a 2-process run)."""
    from purejax.metrics_log import read_metrics
    from tests import _paper_run_worker as worker
    from tests._simulated import run_module

    _tiny_paper_run_root(tmp_path)

    worker.run(str(tmp_path), str(tmp_path / "one_device"))
    proc = run_module(
        "tests._paper_run_worker", str(tmp_path), str(tmp_path / "mesh"), "--mesh", "1,2,4",
        "--record-eager", str(tmp_path / "eager_ops.txt"), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = read_metrics(str(tmp_path / "one_device" / "metrics.jsonl"))
    got = read_metrics(str(tmp_path / "mesh" / "metrics.jsonl"))
    assert [r["step"] for r in want] == [r["step"] for r in got] == [0, 1, 2]
    assert "eval/accuracy" in want[0] and "train/rollout/prm_min_mean" in want[1]
    for g, w in zip(got, want):
        for key, value in w.items():
            if "/time/" not in key and isinstance(value, float):
                np.testing.assert_allclose(g[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    assert os.path.isfile(tmp_path / "mesh" / "policy" / "model.safetensors")
    assert (tmp_path / "eager_ops.txt").read_text().split() == []
