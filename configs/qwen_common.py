"""The paper's nine real runs: {Qwen2.5-Math-7B, Qwen2.5-Math-1.5B, Qwen2.5-7B} x {PRM, VR, PRM+VR}.

Each configs/qwen25_<model>_<run>.py is `paper_run(model, run)`. Everything not
set here is the PURE_SPEC §7 default of `purejax.config.defaults()`: 64 prompts
x 8 samples, one gradient step per rollout, sampling temperature 1.0, KL beta
1e-3 (k3, in the reward), clip 0.2, grad norm 1.0, constant LR, 1024 prompt +
7168 response tokens, soft-min T = 0.1, token-mean baseline with whitening,
checkpoint and greedy evaluation (3000 tokens) every 50 steps.

Checkpoints are the Hub ids, resolved through the local HF cache, or
`$PUREJAX_MODELS/<name>` when PUREJAX_MODELS is set (purejax.model_paths); a
missing one fails before anything loads, naming the HF repo, the `hf download`
command and the field to override (--config.policy.path=DIR, --config.prm.path=DIR).
The data default to the files shipped in the package (purejax/data_files/math).

Choices where the sources differ (PURE_SPEC: the paper is the default):
- VR baseline: the paper's own plain RLOO ('rloo'); the verl code's variant
  (VR on the last token, sharing the token baseline) is --config.rewards.vr.baseline=shared.
- VR coverage: the VR applies to the prompts with a ground truth; with the
  shipped training file that is 879 of 8,523 (~10%), the paper's PRM+VR
  setting. PURE-VR therefore also rewards only those 879 (the others give zero
  advantage); for the paper's full-VR run point --config.data.train_path at a
  file whose every prompt has an answer (the file's `ref_answer`s are kept out
  of training rewards on purpose, see purejax.data).
- Response budget: the verl yaml's 7168 tokens (spec §7), although
  Qwen2.5-Math's config.json declares 4096 positions; lower
  --config.rollout.max_new_tokens for a cheaper run.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from configs import common
from purejax import model_paths


@dataclasses.dataclass(frozen=True)
class BaseModel:
    checkpoint: str  # a key of purejax.model_paths.HF_REPOS
    total_steps: int


# PURE_SPEC §7: 500 steps for the Math models, 1000 for Qwen2.5-7B.
MODELS = {
    "qwen25_math_7b": BaseModel("Qwen2.5-Math-7B", total_steps=500),
    "qwen25_math_1_5b": BaseModel("Qwen2.5-Math-1.5B", total_steps=500),
    "qwen25_7b": BaseModel("Qwen2.5-7B", total_steps=1000),
}
# Every run scores with the one released PRM (Qwen2.5-Math-7B trained on PRM800K).
PRM_CHECKPOINT = "PURE-PRM-7B"
# PURE_SPEC §7: lr 5e-7 for PRM-only, 1e-6 for VR and PRM+VR.
LEARNING_RATES = {"prm": 5e-7, "vr": 1e-6, "prm_vr": 1e-6}
RUNS = tuple(LEARNING_RATES)


def paper_run(model: str, run: str, credit: str = "soft_min") -> ml_collections.ConfigDict:
    """The validated, locked config of the paper's `run` ('prm', 'vr', 'prm_vr') on `model`;
    `credit` is PURE's soft_min, or 'sum' for the ablation that collapses."""
    return common.finish(_paper_run(model, run, credit))


def openrlhf_run(model: str, run: str) -> ml_collections.ConfigDict:
    """The validated, locked config of `run` on `model` as the official OpenRLHF branch trains
    it (`examples/scripts/train_pure.sh` and the defaults of `openrlhf/cli/train_pure_ray.py`):
    the code behind the paper's headline table (README, "Official flags -> purejax settings").

    Where it differs from `paper_run` (the verl yaml's settings):
    - 64 prompts x 4 samples, sampling temperature 0.5, 1024 + 2048 tokens;
    - the token_rate baseline (`--reward_baseline token`), step ends masked
      (`--nomask_separator_adv` off) and whitening over the other tokens;
    - two updates per rollout (`--train_batch_size 128`), each over 64 passes of 2 responses
      (`--micro_train_batch_size 2`), the loss a token mean per response then a mean over
      responses, and the ratio guard (a pass whose mean ratio exceeds 10 is dropped);
    - KL k1 in the reward, lr 5e-7 for every run, AdamW betas (0.9, 0.95);
    - VR = solved - 1, in {-1, 0}, with its own RLOO baseline (the same advantages as {0, 1}).
    """
    c = _paper_run(model, run, "soft_min")
    c.rollout.update(samples_per_prompt=4, temperature=0.5, max_prompt_len=1024, max_new_tokens=2048)
    c.advantage.update(baseline="token_rate", zero_step_ends=True, whiten=True)
    c.ppo.update(minibatches=2, epochs=1, micro_batches=64, loss_agg="seq-mean-token-mean", ratio_guard=10.0,
                 kl_estimator="k1", kl_beta=1e-3, kl_in="reward")  # fmt: skip
    c.optim.update(lr=5e-7, beta2=0.95, weight_decay=0.0)
    if "vr" in c.rewards:
        c.rewards.vr.update(correct=0.0, wrong=-1.0)
    return common.finish(c)


def _paper_run(model: str, run: str, credit: str) -> ml_collections.ConfigDict:
    if model not in MODELS:
        raise ValueError(f"paper_run: unknown model {model!r}; allowed: {', '.join(MODELS)}.")
    if run not in LEARNING_RATES:
        raise ValueError(f"paper_run: unknown run {run!r}; allowed: {', '.join(RUNS)}.")
    spec = MODELS[model]
    c = common.base(lr=LEARNING_RATES[run], credit=credit)
    c.total_steps = spec.total_steps
    c.policy.path = model_paths.local_path(spec.checkpoint)
    c.prm.path = model_paths.local_path(PRM_CHECKPOINT)
    if run in ("prm", "prm_vr"):
        c.rewards.prm = common.prm_reward()
    if run in ("vr", "prm_vr"):
        c.rewards.vr = common.vr_reward(baseline="rloo")
    # Memory at 1024 + 7168 tokens (README, "Plans": 63.6 GiB per device on 8 devices; 37.3
    # GiB with --config.mesh.fsdp=4 --config.mesh.tensor=2): FSDP over every device; per
    # train pass 8 rows, gradients accumulated over 64 passes into the paper's one update;
    # logits 1024 positions at a time; layers scanned and recomputed in the backward pass;
    # 64 rows per sampler call and 8 per PRM call.
    c.mesh.update(data=1, fsdp=-1, tensor=1)
    c.ppo.update(micro_batches=64, logit_chunk=1024, remat=True)
    c.rollout.sample_batch = 64
    c.prm.batch_size = 8
    return c
