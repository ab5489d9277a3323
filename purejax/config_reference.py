"""The configuration reference: every key, its default and its meaning, generated from the schema.

    python -m experiments.config_reference            # print the Markdown
    python -m experiments.config_reference --write README.md

The README's reference is this generator's output (a test checks it), so it
cannot drift from `purejax.config.defaults()` and the reward-source registry.
"""

from __future__ import annotations

from purejax import config as config_lib
from purejax.data import DATA_DIR
from purejax.rewards.sources import SOURCE_TYPES

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"

# One line per field: what it means (defaults come from the schema itself).
FIELD_DOCS = {
    "seed": "Seeds everything: prompt order, sampling, updates, reward subsampling and noise.",
    "num_seeds": "Trains seeds seed, seed+1, ... in lockstep, in one jitted sampler and update call "
    "per step (purejaxrl-style); each seed logs to workdir/seed_N/.",
    "seed_map": "How num_seeds > 1 maps over the seeds (purejax.seed_map): 'loop' (jax.lax.map; each seed "
    "bit for bit its single-seed run; faster on CPU), 'vmap' (one batched program; fills an accelerator), "
    "'auto' (loop on CPU, vmap on GPU/TPU).",
    "total_steps": "RL steps (one rollout batch and one update each).",
    "checkpoint_every": "Steps between orbax checkpoints (one is always written at the end).",
    "eval_every": "Steps between greedy evaluations (also at step 0 and at the end).",
    "policy.path": "Local HF directory of the policy (config.json, safetensors, tokenizer), a Hub id ORG/NAME "
    "from the local HF cache (downloaded when online), or a built-in task's name (purejax.tasks).",
    "policy.dtype": "Compute dtype of the policy (forward passes, sampler, KV cache, reference policy, HF export): "
    "float32, bfloat16 or float16.",
    "policy.param_dtype": "Dtype of the trained master weights and so of the AdamW moments (float32: mixed "
    "precision; equal to policy.dtype: no master copy). Checkpoints store the masters.",
    "policy.arch": "Architecture without weights for experiments.plan: a name of purejax.models.archs.ARCH_TABLE "
    "(\"\" = config.json in policy.path, or the table entry of its checkpoint name).",
    "prm.path": "Local HF directory or Hub id of the PRM (a ...ForTokenClassification), or a built-in PRM's "
    "name (purejax.tasks); read only when a reward source needs the 'prm' scorer.",
    "prm.step_token": "The PRM's step token; every step-end token is replaced by it (PURE_SPEC §2).",
    "prm.dtype": "Parameter and compute dtype of the PRM.",
    "prm.arch": "Like policy.arch, for the PRM (a token classifier with 2 labels).",
    "prm.batch_size": "Rows per PRM scoring forward (0: the whole rollout batch in one call); bounds "
    "the PRM's activation memory.",
    "data.train_path": "Training prompts: a .jsonl, .json or .parquet file or an HF dataset id ORG/NAME[:CONFIG][:SPLIT] "
    "(`pip install 'purejax[hf]'`; offline from the local cache); answer \"null\" or null when absent. "
    "Default: the PURE prompts shipped in the package.",
    "data.eval_names": "Names of the held-out sets (the five benchmark names read in their own formats; "
    "prompt ids are NAME/id, so names are unique).",
    "data.eval_paths": "One source per eval name, as data.train_path (the five benchmarks of the paper, "
    "shipped in the package, by default).",
    "data.question_key": "Question column (\"\" = the first of question, problem, prompt the data has).",
    "data.answer_key": "Answer column (\"\" = answer or final_answer); a string or a finite number, never a "
    "boolean or NaN.",
    "data.prompt_template": "Prompt format with a `{question}` placeholder (Qwen2.5-Math chat template).",
    "data.chat_template": "Format prompts with the tokenizer's own chat template (the paper's system prompt, "
    "then the question) instead of data.prompt_template.",
    "data.step_separator": "Text that ends a reasoning step; every token whose text ends with it is a step end.",
    "rollout.prompts_per_step": "Prompts per RL step.",
    "rollout.samples_per_prompt": "Responses per prompt (K, the group of the baselines).",
    "rollout.sample_batch": "Rows per sampler call (0: the whole rollout batch in one call); bounds the "
    "KV cache. Must divide prompts_per_step x samples_per_prompt.",
    "rollout.mesh_tensor": "Decode layout. 0: the sampler uses the training layout (FSDP weights, gathered "
    "where XLA decides). T >= 1: at the start of each step the policy's weights are laid out once for "
    "generation, replicated over devices / T data groups and tensor-parallel over T devices inside a group "
    "(T must divide the device count; heads and MLP width it does not divide stay whole).",
    "rollout.engine": "Rollout sampler. 'static': `sampling.sample`, each call decodes all its rows until the "
    "longest ends. 'continuous': `purejax.engine`, a fixed decode batch over a paged KV cache whose slots "
    "take the next prompt as rows end (faster with long-tailed lengths; the same tokens for the same key "
    "up to float rounding). One device only: with a device mesh use 'static'.",
    "rollout.slots": "Continuous engine only: decode slots (its decode batch), at most the rows of a sampler call.",
    "rollout.page_size": "Continuous engine only: positions per KV page.",
    "rollout.num_pages": "Continuous engine only: KV pages per layer in the pool (0: `slots` whole rows, so no "
    "row is ever evicted). Fewer bound the cache; a row that finds no page waits, and if all wait the "
    "highest-numbered one is evicted and decoded again later. Must hold one whole row.",
    "rollout.paged_attention": "Continuous engine only: 'auto' (the Pallas paged-attention kernel of "
    "jax.experimental on GPU and TPU, plain jnp elsewhere), 'jnp', 'pallas_gpu' or 'pallas_tpu'. The TPU "
    "kernel reads keys and values in bfloat16.",
    "rollout.max_prompt_len": "Prompt width in tokens; longer prompts are refused.",
    "rollout.max_new_tokens": "Response width; responses without EOS by then are truncated.",
    "rollout.temperature": "Sampling temperature.",
    "rollout.top_p": "Nucleus sampling mass (1 = off).",
    "rollout.top_k": "Top-k sampling (0 = off).",
    "rewards": "Reward sources by name, each `purejax.config.reward_source(type, ...)` (see below).",
    "advantage.credit": "Credit assignment: sum, min, soft_min, worst_step or all_token_min (PURE_SPEC §3).",
    "advantage.temperature": "T of soft_min (> 0).",
    "advantage.discount": "gamma of sum-form returns, in (0, 1].",
    "advantage.baseline": "token_mean, token_rate, step_mean, rloo, grpo, dr_grpo or none (PURE_SPEC §5).",
    "advantage.whiten": "Whiten advantages over all valid tokens of the batch.",
    "advantage.zero_step_ends": (
        "Step-end tokens get return and advantage 0 and whitening skips them (OpenRLHF's default, "
        "--nomask_separator_adv not set)."
    ),
    "optim.lr": "AdamW learning rate.",
    "optim.weight_decay": "AdamW weight decay.",
    "optim.grad_clip": "Global gradient-norm clip (0 = off).",
    "optim.schedule": "constant, or cosine decay to 0 at total_steps (after warmup_steps of linear warm-up); counted in RL steps.",
    "optim.warmup_steps": "Linear warm-up, in RL steps (all of a step's PPO updates share its rate).",
    "optim.beta1": "AdamW's first-moment decay.",
    "optim.beta2": "AdamW's second-moment decay (verl: 0.999; OpenRLHF: 0.95).",
    "ppo.clip_eps_low": "Lower clip of the ratio (1 - eps).",
    "ppo.clip_eps_high": "Upper clip of the ratio (1 + eps).",
    "ppo.dual_clip": "Dual-clip constant c > 1 for negative advantages (0 = off).",
    "ppo.epochs": "Passes over each rollout batch.",
    "ppo.minibatches": "Minibatches per epoch (must divide the batch).",
    "ppo.micro_batches": "Gradient accumulation: forward/backward passes per minibatch, summed into one "
    "exact update (the loss normalisers are the whole minibatch's). Bounds activation memory to "
    "minibatch / micro_batches rows; the old/reference log-prob passes use the same row chunks.",
    "ppo.logit_chunk": "Response positions per vocabulary projection in the log-prob passes (0: all at "
    "once). Chunking keeps [rows, chunk, V] logits instead of [rows, T, V] (V = 152k for Qwen2.5); "
    "the backward recomputes each chunk. Must divide rollout.max_new_tokens.",
    "ppo.kl_beta": "KL coefficient beta.",
    "ppo.kl_estimator": "k1, k2 or k3 (verl's low_var_kl).",
    "ppo.kl_in": "reward (-beta kl per token, credited in sum form) or loss.",
    "ppo.loss_agg": "token-mean, seq-mean-token-mean, seq-mean-token-sum or seq-mean-token-sum-norm.",
    "ppo.ratio_guard": "Skip the update when the mean over responses of their token-mean ratio exceeds this "
    "(0 = off; OpenRLHF uses 10).",
    "ppo.remat": "Run the layers as one lax.scan in every pass of the train step and recompute each "
    "layer's activations in the backward pass: one layer's activations alive at a time, ~1/3 more "
    "compute. Needed for long sequences (see the scale-out guide).",
    "eval.num_prompts": "Held-out prompts evaluated (0 = all).",
    "eval.batch_size": "Greedy evaluation batch size.",
    "eval.max_new_tokens": "Greedy evaluation length limit (the paper: 3000).",
    "logging.keep_checkpoints": "Checkpoints kept (the latest k).",
    "logging.sample_every": "Steps between sample-response dumps in WORKDIR/samples/.",
    "logging.tensorboard": "Write TensorBoard event files.",
    "logging.wandb_project": "W&B project to log to when wandb is installed (\"\" = off).",
    "monitor.early_stop": "Stop the run when a reward-hacking alarm is raised.",
    "monitor.max_skipped_steps": "End the run with an error after this many consecutive RL steps whose every update "
    "was skipped as non-finite (0 = never): the weights can no longer move.",
    "monitor.step_timeout_s": "A step (rollout, scoring, update, evaluation, checkpoint) running longer than this "
    "many seconds prints every thread's stack and exits with code 124, so a scheduler can restart the run from its "
    "last checkpoint instead of a hung pod waiting forever. -1 (auto, the default): 10 times the slowest step of the "
    "same kind (training only, or with an evaluation, a checkpoint, the final export) this process has run, and at "
    "least 30 min; the first step of each kind has no limit, since it compiles (purejax.watchdog). 0 = off. A fixed "
    "number must exceed the slowest step, the first one included. A resume may change it (it is not part of the "
    "config's fingerprint).",
    "mesh.data": "Data-parallel mesh axis size (-1 = the rest of the devices); see purejax.sharding.",
    "mesh.fsdp": "FSDP mesh axis size: the batch and every parameter's embed dimension are split over it.",
    "mesh.tensor": "Tensor-parallel mesh axis size: heads, MLP width and vocabulary are split over it.",
    "mesh.rules": "(logical_axis, mesh axis or tuple of axes or None) pairs mapping the Decoder's logical axis names "
    "to mesh axes.",
    "distributed.coordinator_address": "host:port of process 0 for jax.distributed.initialize "
    "(\"\" = from the environment: SLURM, TPU pod, or JAX_COORDINATOR_ADDRESS).",
    "distributed.num_processes": "Number of processes (0 = from the environment).",
    "distributed.process_id": "This process's index (-1 = from the environment).",
}

SOURCE_FIELD_DOCS = {
    "type": "The source type (one of the table below).",
    "weight": "Multiplies the source's value (>= 0).",
    "applies_to": "all, or with_answer (only prompts that have a ground truth).",
    "fraction": "Share of those prompts the source applies to (a deterministic hash of seed and prompt).",
    "level": "step (rewards on step ends) or sequence (one value per response).",
    "baseline": "shared (sequence sources: on the last token after the credit transform, sharing the credit "
    "baseline; the verl code's VR) or rloo (own RLOO; the paper's VR).",
}


def _fields(section, prefix=""):
    for key, value in section.items():
        path = f"{prefix}{key}"
        if hasattr(value, "items") and path != "rewards":
            yield from _fields(value, path + ".")
        else:
            yield path, value


def _show(value) -> str:
    text = repr(value).replace(DATA_DIR, "<purejax>/data_files/math")
    if len(text) > 60:
        text = text[:57] + "..."
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for path, value in _fields(config_lib.defaults()):
        lines.append(f"| `{path}` | {_show(value)} | {FIELD_DOCS[path]} |")
    lines += [
        "",
        "Every `rewards.<name>` entry has these fields, plus its type's parameters:",
        "",
        "| field | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v} |" for k, v in SOURCE_FIELD_DOCS.items()]
    lines += [
        "",
        "| source type | kind | level | parameters (defaults) | what it scores |",
        "|---|---|---|---|---|",
    ]
    # The library's own sources; a task's (e.g. `scripted_prm`) are documented with the task, and
    # whether its module was imported must not change this table.
    own = sorted((n, s) for n, s in SOURCE_TYPES.items() if s.fn.__module__.startswith("purejax.rewards"))
    for name, source in own:
        params = ", ".join(f"{k}={v!r}" for k, v in source.params.items()).replace("|", "\\|") or "-"
        lines.append(f"| `{name}` | {source.kind} | {source.level} | {params} | {source.doc} |")
    return "\n".join(lines)


def undocumented() -> list[str]:
    """Schema fields without a FIELD_DOCS line (a test keeps this empty)."""
    return [path for path, _ in _fields(config_lib.defaults()) if path not in FIELD_DOCS]


def update_readme(text: str) -> str:
    """`text` with the block between START and END replaced by `markdown()`."""
    if START not in text or END not in text:
        raise ValueError(f"the README has no {START} ... {END} block to fill.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown()}\n{END}{tail}"
