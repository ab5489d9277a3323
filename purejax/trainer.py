"""The host loop: sample, score, update, evaluate, log, checkpoint, resume.

    purejax.trainer.train(config, workdir)

The Python loop only moves data between jitted functions (STYLE.md rule 8).
Everything random is derived from (config.seed, step): the prompt order, the
sampling key, the update key, the reward subsampling and noise. A run is
therefore determined by its config, and a run resumed from its latest
checkpoint writes exactly the records an uninterrupted run writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from purejax import checkpoint as checkpoint_lib
from purejax import credit
from purejax import metrics_log
from purejax import monitors
from purejax import steps as steps_lib
from purejax import train_step as train_step_lib
from purejax.data import Prompt, format_prompt
from purejax.rewards import compose as compose_lib
from purejax.rewards import verifier
from purejax.rewards.prm import PRMScorer
from purejax.rewards.sources import TokenBatch
from purejax.sampling import sample


@dataclasses.dataclass
class Task:
    """Everything a run needs besides the config: models, tokenizer, prompts."""

    policy: Any  # purejax.models.Decoder (causal LM)
    tokenizer: Any  # HF tokenizer shared by policy and PRM
    train_prompts: list[Prompt]
    eval_prompts: list[Prompt]
    prm: PRMScorer | None = None


def encode_prompts(
    tokenizer, prompts: Sequence[Prompt], template: str, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompt ids and mask [N, width]; prompts longer than `width` raise."""
    texts = [format_prompt(template, p.question) for p in prompts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = np.full((len(texts), width), tokenizer.pad_token_id or 0, np.int32)
    mask = np.zeros((len(texts), width), bool)
    for i, row in enumerate(encoded):  # host-side, once per run
        if len(row) > width:
            raise ValueError(
                f"prompt {prompts[i].id} has {len(row)} tokens > rollout.max_prompt_len="
                f"{width}; raise rollout.max_prompt_len or filter the dataset."
            )
        if row:
            ids[i, width - len(row) :] = row
            mask[i, width - len(row) :] = True
    return ids, mask


def prompt_order(num_prompts: int, seed: int, step: int, per_step: int) -> np.ndarray:
    """Dataset indices of the prompts of `step`: epochs of seeded permutations, no state."""
    start = step * per_step
    epoch, offset = divmod(start, num_prompts)
    out = []
    while len(out) < per_step:
        order = np.random.default_rng([seed, epoch]).permutation(num_prompts)
        out.extend(order[offset : offset + per_step - len(out)].tolist())
        epoch, offset = epoch + 1, 0
    return np.asarray(out, np.int64)


def _eos_ids(tokenizer) -> list[int]:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; set one so responses can end.")
    return [int(tokenizer.eos_token_id)]


class Trainer:
    """One run in `workdir`; `run()` trains to config.total_steps, resuming if possible."""

    def __init__(self, config, task: Task, workdir: str, show_progress: bool = True):
        self.config, self.task, self.workdir = config, task, workdir
        self.show_progress = show_progress
        r = config.rollout
        self.k = int(r.samples_per_prompt)
        self.separator_ids = steps_lib.separator_ids(task.tokenizer, config.data.step_separator)
        self.eos_ids = _eos_ids(task.tokenizer)
        template = config.data.prompt_template
        self.train_ids, self.train_mask = encode_prompts(
            task.tokenizer, task.train_prompts, template, int(r.max_prompt_len)
        )
        self.eval_ids, self.eval_mask = encode_prompts(
            task.tokenizer, task.eval_prompts, template, int(r.max_prompt_len)
        )
        self.optimizer = train_step_lib.make_optimizer(config)
        self.graphdef, self.state = train_step_lib.init_train_state(task.policy, self.optimizer)
        self.update = train_step_lib.make_train_step(config, self.graphdef, self.optimizer)
        self.step_ends = jax.jit(jax.vmap(steps_lib.step_end_mask, (0, 0, None)))
        temperature = float(config.advantage.temperature)
        self.transformed = jax.jit(jax.vmap(lambda r_t, e_t: credit.soft_min_rewards(r_t, e_t, temperature)))
        self.monitor = monitors.HackingMonitor()
        self.checkpoints = checkpoint_lib.Checkpointer(
            os.path.join(workdir, "checkpoints"), keep=int(config.logging.keep_checkpoints)
        )

    # -------------------------------------------------------------- pieces

    def _policy(self, params):
        return nnx.merge(self.graphdef, params)

    def rollout(self, step: int):
        c = self.config
        prompt_index = np.repeat(
            prompt_order(len(self.task.train_prompts), int(c.seed), step, int(c.rollout.prompts_per_step)),
            self.k,
        )
        prompt_ids, prompt_mask = self.train_ids[prompt_index], self.train_mask[prompt_index]
        key = jax.random.fold_in(jax.random.PRNGKey(int(c.seed)), step)
        out = sample(
            self._policy(self.state.params),
            jnp.asarray(prompt_ids),
            jnp.asarray(prompt_mask),
            int(c.rollout.max_new_tokens),
            key,
            temperature=float(c.rollout.temperature),
            top_k=int(c.rollout.top_k),
            top_p=float(c.rollout.top_p),
            eos_token_id=self.eos_ids,
            pad_token_id=int(self.task.tokenizer.pad_token_id or 0),
        )
        return prompt_index, prompt_ids, prompt_mask, out

    def decode(self, tokens, mask) -> list[str]:
        tokens = np.where(np.asarray(mask), np.asarray(tokens), -1)
        return self.task.tokenizer.batch_decode([row[row >= 0] for row in tokens], skip_special_tokens=True)

    def evaluate(self) -> dict[str, float]:
        """Greedy pass@1 on the held-out prompts with the verifier."""
        c = self.config
        policy = self._policy(self.state.params)
        batch = int(c.eval.batch_size)
        texts = []
        for start in range(0, len(self.task.eval_prompts), batch):  # fixed-size chunks: one compile
            ids = self.eval_ids[start : start + batch]
            mask = self.eval_mask[start : start + batch]
            pad = batch - ids.shape[0]
            if pad:
                ids = np.concatenate([ids, np.repeat(ids[-1:], pad, 0)])
                mask = np.concatenate([mask, np.repeat(mask[-1:], pad, 0)])
            out = sample(
                policy,
                jnp.asarray(ids),
                jnp.asarray(mask),
                int(c.eval.max_new_tokens),
                jax.random.PRNGKey(0),
                temperature=0.0,
                eos_token_id=self.eos_ids,
                pad_token_id=int(self.task.tokenizer.pad_token_id or 0),
            )
            texts.extend(self.decode(out.tokens, out.mask)[: batch - pad])
        truths = [p.answer for p in self.task.eval_prompts]
        scores = verifier.verify_batch(texts, truths)
        self._last_eval_texts = texts
        return {"eval/accuracy": float(np.mean(scores)) if len(scores) else float("nan")}

    def score(self, step, prompt_index, prompt_ids, prompt_mask, out):
        texts = self.decode(out.tokens, out.mask)
        response_ids, response_mask = np.asarray(out.tokens), np.asarray(out.mask)
        step_end = np.asarray(self.step_ends(out.tokens, out.mask, jnp.asarray(self.separator_ids)))
        truths = [self.task.train_prompts[i].answer for i in prompt_index]
        tokens = TokenBatch(prompt_ids, prompt_mask, response_ids, response_mask, step_end)
        composed = compose_lib.compose_rewards(
            self.config.rewards,
            texts=texts,
            truths=truths,
            response_mask=response_mask,
            prompt_index=prompt_index,
            step=step,
            seed=int(self.config.seed),
            tokens=tokens,
            prm=self.task.prm,
        )
        return texts, truths, step_end, composed

    def _vr_for_monitor(self, composed, texts, truths) -> np.ndarray:
        """1/0 where a ground truth exists (NaN elsewhere), reusing the VR source when present."""
        vr = np.full(len(texts), np.nan)
        for name, level in composed.levels.items():
            spec = self.config.rewards[name]
            if spec.type == "verifiable" and spec.applies_to == "with_answer" and spec.fraction == 1.0:
                rows = composed.applies[name]
                # Compare with the configured `correct` value: OpenRLHF codes VR as {0, -1}.
                vr[rows] = (composed.raw[name][rows] == np.float32(spec.correct)).astype(float)
                return vr
        rows = [i for i, t in enumerate(truths) if t is not None]
        if rows:
            vr[rows] = verifier.verify_batch([texts[i] for i in rows], [truths[i] for i in rows])
        return vr

    def _process_reward(self, composed, step_end):
        """Per-row sum of the transformed step rewards (what the policy is paid) and worst step."""
        step_r = np.zeros(step_end.shape, np.float32)
        for name, level in composed.levels.items():
            if level == "step":
                step_r += np.asarray(composed.raw[name], np.float32)
        ends = step_end.astype(bool)
        if self.config.advantage.credit == "soft_min":
            paid = np.asarray(self.transformed(jnp.asarray(step_r), jnp.asarray(ends))).sum(1)
        elif self.config.advantage.credit == "sum":
            paid = (step_r * ends).sum(1)
        else:
            paid = np.where(ends, step_r, np.inf).min(1)
            paid = np.where(np.isfinite(paid), paid, 0.0)
        worst = np.where(ends, step_r, np.inf).min(1)
        return paid, np.where(np.isfinite(worst), worst, 0.0)

    def _save_samples(self, step, prompt_index, texts, composed):
        path = os.path.join(self.workdir, "samples", f"step_{step:06d}.jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rows = []
        for b in range(0, len(texts), self.k):  # the first sample of each prompt
            rows.append(
                {
                    "prompt": self.task.train_prompts[prompt_index[b]].question,
                    "response": texts[b],
                    "rewards": {n: float(np.sum(v[b])) for n, v in composed.raw.items()},
                }
            )
        _atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))

    # -------------------------------------------------------------- the loop

    def run(self, stop_after: int | None = None) -> dict:
        """Trains until config.total_steps (or `stop_after` steps of this call, for tests)."""
        c = self.config
        start = 0
        restored = self.checkpoints.restore(self.state)
        if restored is not None:
            self.state, meta = restored
            start = int(meta["step"])
            self.monitor.history = list(meta["monitor_history"])
        # A fresh start drops whatever an earlier attempt wrote before its first checkpoint.
        writer = metrics_log.MetricsWriter(
            self.workdir,
            resume_step=start if restored else -1,
            tensorboard=bool(c.logging.tensorboard),
            wandb_project=c.logging.wandb_project or None,
            config=c.to_dict(),
        )
        total = int(c.total_steps)
        end = total if stop_after is None else min(total, start + stop_after)
        summary = {}
        bar = tqdm(
            total=total, initial=start, desc="PURE", disable=not self.show_progress, dynamic_ncols=True
        )
        try:
            if start == 0:
                summary.update(writer.write(0, self.evaluate()))
            for step in range(start, end):
                record = self._one_step(step)
                done = step + 1
                if done % int(c.eval_every) == 0 or done == total:
                    record.update(self.evaluate())
                summary = writer.write(done, record)
                if done % int(c.checkpoint_every) == 0 or done == total:
                    self.checkpoints.save(
                        done,
                        self.state,
                        {"step": done, "seed": int(c.seed), "monitor_history": self.monitor.state()},
                    )
                bar.update(1)
                bar.set_postfix(
                    {
                        k.split("/")[-1]: f"{v:.3g}"
                        for k, v in summary.items()
                        if k in _PROGRESS_KEYS and isinstance(v, float)
                    }
                )
                alarms = [k for k, v in record.items() if k.startswith("train/alarm/") and v]
                if alarms:
                    bar.write(
                        f"step {done}: reward-hacking alarm: {', '.join(a.split('/')[-1] for a in alarms)}"
                    )
                    if c.monitor.early_stop:
                        bar.write("stopping early (monitor.early_stop=True)")
                        break
        finally:
            bar.close()
            writer.close()
        return summary

    def _one_step(self, step: int) -> dict:
        c = self.config
        t0 = time.perf_counter()
        prompt_index, prompt_ids, prompt_mask, out = self.rollout(step)
        jax.block_until_ready(out.tokens)
        t1 = time.perf_counter()
        texts, truths, step_end, composed = self.score(step, prompt_index, prompt_ids, prompt_mask, out)
        t2 = time.perf_counter()
        batch = train_step_lib.RolloutBatch(
            prompt_ids=jnp.asarray(prompt_ids),
            prompt_mask=jnp.asarray(prompt_mask),
            response_ids=out.tokens,
            response_mask=out.mask,
            step_end=jnp.asarray(step_end),
            step_rewards=jnp.asarray(composed.step_r_bt),
            seq_rewards=jnp.asarray(composed.seq_r_b),
        )
        self.state, update_metrics = self.update(self.state, batch, jax.random.PRNGKey(int(c.seed)))
        update_metrics = jax.device_get(update_metrics)
        t3 = time.perf_counter()

        mask = np.asarray(out.mask)
        lengths = mask.sum(1)
        truncated = lengths == mask.shape[1]
        last_tokens = np.asarray(out.tokens)[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
        truncated &= ~np.isin(last_tokens, self.eos_ids)
        paid, worst = self._process_reward(composed, step_end)
        stats = monitors.rollout_stats(
            response_mask=mask,
            step_end=step_end,
            truncated=truncated,
            process_reward_sum=paid,
            prm_min=worst,
            vr_correct=self._vr_for_monitor(composed, texts, truths),
            texts=texts,
        )
        record = {f"train/{k}": float(v) for k, v in update_metrics.items()}
        record.update({f"train/{k}": v for k, v in stats.items()})
        record.update({f"train/{k}": v for k, v in self.monitor.update(stats).items()})
        record.update(
            {f"train/{k}": v for k, v in compose_lib.reward_metrics(composed, step_end_bt=step_end).items()}
        )
        record.update(
            {
                "train/time/sample_s": t1 - t0,
                "train/time/score_s": t2 - t1,
                "train/time/update_s": t3 - t2,
                "train/time/tokens_per_s": float(lengths.sum()) / max(t1 - t0, 1e-9),
            }
        )
        if (step + 1) % int(c.logging.sample_every) == 0:
            self._save_samples(step + 1, prompt_index, texts, composed)
        return record


_PROGRESS_KEYS = (
    "eval/accuracy",
    "train/rollout/vr_accuracy",
    "train/rollout/process_reward_sum",
    "train/rollout/steps_mean",
    "train/rollout/length_mean",
    "train/kl_reward",
    "train/loss",
)


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------ set-up from a config


def _require_dir(path: str, field: str, what: str) -> None:
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(
            f"config.{field}={path!r} is not a local directory. Download {what} (config.json, "
            f"*.safetensors and the tokenizer files) on a machine with internet access, copy it here "
            f"and pass its path, e.g. --config.{field}=/data/models/NAME. Nothing is downloaded at run time."
        )


def build_task(config) -> Task:
    """Loads the policy, tokenizer, PRM and prompts named by the config (local paths only)."""
    if config.policy.path.startswith("builtin:"):
        from purejax.tasks import builtin

        return builtin.build_task(config)
    import jax.numpy as jnp
    from transformers import AutoTokenizer

    from purejax import data as data_lib
    from purejax.models import load_pretrained

    _require_dir(config.policy.path, "policy.path", "the policy checkpoint")
    dtype = jnp.dtype(config.policy.dtype)
    policy = load_pretrained(config.policy.path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(config.policy.path)
    prm = None
    if any(spec.type == "prm" for spec in config.rewards.values()):
        _require_dir(config.prm.path, "prm.path", "the PRM checkpoint")
        prm_model = load_pretrained(config.prm.path, dtype=jnp.dtype(config.prm.dtype))
        step_ids = tokenizer(config.prm.step_token, add_special_tokens=False)["input_ids"]
        if len(step_ids) != 1:
            raise ValueError(
                f"config.prm.step_token={config.prm.step_token!r} is {len(step_ids)} tokens; "
                "it must be exactly one token of the policy's tokenizer."
            )
        prm = PRMScorer(jax.jit(lambda ids, mask: prm_model(ids, mask)), step_ids[0])
    train_prompts = data_lib.load_train_prompts(config.data.train_path)
    eval_prompts = []
    for name, path in zip(config.data.eval_names, config.data.eval_paths):
        eval_prompts.extend(data_lib.load_benchmark(name, path))
    if config.eval.num_prompts:
        eval_prompts = eval_prompts[: int(config.eval.num_prompts)]
    return Task(policy, tokenizer, train_prompts, eval_prompts, prm)


def main(config, workdir: str, show_progress: bool = True) -> dict:
    """Builds the task, trains (resuming from `workdir`), prints a summary and writes plots."""
    from purejax import report

    task = build_task(config)
    summary = Trainer(config, task, workdir, show_progress=show_progress).run()
    if jax.process_index() == 0:
        print(report.summarize(workdir))
    return summary
