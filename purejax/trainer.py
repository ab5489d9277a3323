"""The host loop: sample, score, update, evaluate, log, checkpoint, resume.

    purejax.trainer.train(config, workdir)

The Python loop only moves data between jitted functions (STYLE.md rule 8).
Everything random is derived from (config.seed, step): the prompt order, the
sampling key, the update key, the reward subsampling and noise. A run is
therefore determined by its config, and a run resumed from its latest
checkpoint writes exactly the records an uninterrupted run writes.
"""

from __future__ import annotations

import contextlib
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

from purejax import atomic
from purejax import checkpoint as checkpoint_lib
from purejax import credit
from purejax import metrics_log
from purejax import monitors
from purejax import sharding
from purejax import steps as steps_lib
from purejax import train_step as train_step_lib
from purejax.data import Prompt, format_prompt
from purejax.model_paths import require_checkpoint_dir
from purejax.models import export_pretrained
from purejax.rewards import compose as compose_lib
from purejax.rewards import verifier
from purejax.rewards.prm import PRMScorer, scorer_for
from purejax.rewards.sources import TokenBatch
from purejax.sampling import sample_seeds, stop_token_ids


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


class Trainer:
    """One run in `workdir`; `run()` trains to config.total_steps, resuming if possible.

    With config.num_seeds = S > 1 the seeds config.seed, ..., config.seed + S - 1
    train in lockstep, as purejaxrl runs seeds: every array of the training state
    carries a leading seed axis, and sampling and the update are one jitted vmap
    over it. Rewards are host-side and computed per seed. Seed s writes what a
    single-seed run with seed = config.seed + s writes (up to float rounding of
    the batched matmuls), into workdir/seed_<seed>/; the seeds share one
    checkpoint in workdir/checkpoints. With S = 1 everything is in `workdir`.

    With a device mesh (config.mesh, several devices or processes) the state lives as
    global arrays sharded by `purejax.sharding` (each seed's slice as one seed's state
    would be); the sampler, the PRM and the update run sharded, and the host side
    (rewards, metrics) sees whole numpy copies on every process. Only process 0 writes.
    """

    def __init__(self, config, task: Task, workdir: str, show_progress: bool = True):
        self.config, self.task, self.workdir = config, task, workdir
        self.show_progress = show_progress
        r = config.rollout
        self.k = int(r.samples_per_prompt)
        self.seeds = tuple(int(config.seed) + s for s in range(int(config.num_seeds)))
        self.run_dirs = (
            [workdir]
            if len(self.seeds) == 1
            else [os.path.join(workdir, f"seed_{seed}") for seed in self.seeds]
        )
        self.separator_ids = steps_lib.separator_ids(task.tokenizer, config.data.step_separator)
        self.eos_ids = stop_token_ids(task.tokenizer)
        self.pad_id = int(task.tokenizer.pad_token_id or 0)
        template = config.data.prompt_template
        self.train_ids, self.train_mask = encode_prompts(
            task.tokenizer, task.train_prompts, template, int(r.max_prompt_len)
        )
        self.eval_ids, self.eval_mask = encode_prompts(
            task.tokenizer, task.eval_prompts, template, int(r.max_prompt_len)
        )
        self.optimizer = train_step_lib.make_optimizer(config)
        self.update_keys = jnp.stack([jax.random.PRNGKey(seed) for seed in self.seeds])
        self.partitioner = p = sharding.from_config(config)
        one_seed_sharding = None
        if p is None:
            self.graphdef, state = train_step_lib.init_train_state(task.policy, self.optimizer)
            # Every seed starts from the same policy; they differ in prompts, samples and rewards.
            self.state = jax.tree.map(lambda x: jnp.stack([x] * len(self.seeds)), state)
        else:
            rows = int(r.prompts_per_step) * self.k
            calls = [
                ("config.rollout.sample_batch", int(r.sample_batch))
                if int(r.sample_batch)
                else ("config.rollout.prompts_per_step x samples_per_prompt", rows),
                ("config.eval.batch_size", int(config.eval.batch_size)),
            ]
            if int(config.prm.batch_size):
                calls.append(("config.prm.batch_size", int(config.prm.batch_size)))
            p.check_rows(calls)  # fails at start-up, naming the setting
            self.graphdef, self.state, one_seed_sharding = self._sharded_state(task.policy, p)
            self.update_keys = p.put(self.update_keys, p.replicated())
        self.update = train_step_lib.make_train_step(
            config,
            self.graphdef,
            self.optimizer,
            partitioner=p,
            state_sharding=one_seed_sharding,
            seed_axis=True,
        )
        self.step_ends = jax.jit(jax.vmap(steps_lib.step_end_mask, (0, 0, None)))
        temperature = float(config.advantage.temperature)
        self.transformed = jax.jit(jax.vmap(lambda r_t, e_t: credit.soft_min_rewards(r_t, e_t, temperature)))
        self.monitors = [monitors.HackingMonitor() for _ in self.seeds]
        self.checkpoints = checkpoint_lib.Checkpointer(
            os.path.join(workdir, "checkpoints"), keep=int(config.logging.keep_checkpoints)
        )

    def _sharded_state(self, policy, p):
        """(graphdef, stacked TrainState, one seed's shardings), built shard by shard: a 7B
        policy's reference copy and AdamW moments never exist whole on one device."""
        graphdef, params = nnx.split(policy, nnx.Param)

        def new_state(params):
            params = jax.tree.map(jnp.copy, params)
            ref_params = jax.tree.map(jnp.copy, params)
            return train_step_lib.TrainState(
                params, ref_params, self.optimizer.init(params), jnp.zeros((), jnp.int32)
            )

        one_seed = p.tree(jax.eval_shape(new_state, params))
        stacked = p.seed_stacked(one_seed)
        seeds = len(self.seeds)
        build = jax.jit(
            lambda q: jax.tree.map(lambda x: jnp.stack([x] * seeds), new_state(q)), out_shardings=stacked
        )
        return graphdef, build(p.place(params)), one_seed

    # -------------------------------------------------------------- pieces

    def policy(self, seed_index: int = 0):
        """The current policy of one seed, as a Decoder (on one device)."""
        params = self.state.params
        if self.partitioner is not None:  # global arrays: one whole host copy
            params = jax.tree.map(jnp.asarray, sharding.fetch(params))
        return nnx.merge(self.graphdef, jax.tree.map(lambda x: x[seed_index], params))

    def rollout(self, step: int):
        """Per seed: dataset indices [S, B], prompts [S, B, P] and the samples [S, B, N] (numpy)."""
        c = self.config
        per_step = int(c.rollout.prompts_per_step)
        prompt_index = np.stack(
            [
                np.repeat(prompt_order(len(self.task.train_prompts), seed, step, per_step), self.k)
                for seed in self.seeds
            ]
        )
        prompt_ids, prompt_mask = self.train_ids[prompt_index], self.train_mask[prompt_index]
        keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed), step) for seed in self.seeds])
        rows = prompt_ids.shape[1]
        size = int(c.rollout.sample_batch) or rows  # the config checks that it divides `rows`
        chunks = []
        for start in range(0, rows, size):  # fixed-size row chunks bound the KV cache
            chunk = slice(start, start + size)
            # Chunk i samples with its own key, so chunking changes the draws (not their law).
            chunk_keys = keys if size == rows else jax.vmap(jax.random.fold_in, (0, None))(keys, start)
            out = sample_seeds(
                self.graphdef,
                self.state.params,
                prompt_ids[:, chunk],
                prompt_mask[:, chunk],
                int(c.rollout.max_new_tokens),
                chunk_keys,
                temperature=float(c.rollout.temperature),
                top_k=int(c.rollout.top_k),
                top_p=float(c.rollout.top_p),
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                partitioner=self.partitioner,
            )
            chunks.append(sharding.fetch(out))
        out = type(chunks[0])(*(np.concatenate(parts, axis=1) for parts in zip(*chunks)))
        return prompt_index, prompt_ids, prompt_mask, out

    def decode(self, tokens, mask) -> list[str]:
        tokens = np.where(np.asarray(mask), np.asarray(tokens), -1)
        return self.task.tokenizer.batch_decode([row[row >= 0] for row in tokens], skip_special_tokens=True)

    def evaluate(self) -> list[dict[str, float]]:
        """Greedy pass@1 on the held-out prompts with the verifier, one dict per seed."""
        c = self.config
        batch, n_seeds = int(c.eval.batch_size), len(self.seeds)
        texts = [[] for _ in self.seeds]
        greedy_keys = jnp.stack([jax.random.PRNGKey(0)] * n_seeds)
        for start in range(0, len(self.task.eval_prompts), batch):  # fixed-size chunks: one compile
            ids = self.eval_ids[start : start + batch]
            mask = self.eval_mask[start : start + batch]
            pad = batch - ids.shape[0]
            if pad:
                ids = np.concatenate([ids, np.repeat(ids[-1:], pad, 0)])
                mask = np.concatenate([mask, np.repeat(mask[-1:], pad, 0)])
            out = sample_seeds(
                self.graphdef,
                self.state.params,
                ids,
                mask,
                int(c.eval.max_new_tokens),
                greedy_keys,
                temperature=0.0,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                partitioner=self.partitioner,
            )
            tokens, mask = sharding.fetch((out.tokens, out.mask))
            for s in range(n_seeds):
                texts[s].extend(self.decode(tokens[s], mask[s])[: batch - pad])
        truths = [p.answer for p in self.task.eval_prompts]
        scores = np.asarray(
            verifier.verify_batch([t for seed_texts in texts for t in seed_texts], truths * n_seeds), float
        )
        scores = scores.reshape(n_seeds, len(truths))
        return [
            {"eval/accuracy": float(row.mean()) if len(truths) else float("nan"), "eval/count": len(truths)}
            for row in scores
        ]

    def score(self, step, seed, prompt_index, prompt_ids, prompt_mask, tokens, mask, step_end):
        """One seed's rewards: texts, ground truths and the composed rewards."""
        texts = self.decode(tokens, mask)
        truths = [self.task.train_prompts[i].answer for i in prompt_index]
        batch = TokenBatch(prompt_ids, prompt_mask, tokens, mask, step_end)
        composed = compose_lib.compose_rewards(
            self.config.rewards,
            texts=texts,
            truths=truths,
            response_mask=mask,
            prompt_index=prompt_index,
            step=step,
            seed=seed,
            tokens=batch,
            prm=self.task.prm,
        )
        return texts, truths, composed

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
        worst = np.where(np.isfinite(worst), worst, 0.0)
        if "step" not in composed.levels.values():  # no process reward to report (e.g. VR only)
            worst = np.full_like(worst, np.nan)
        return paid, worst

    def _save_samples(self, run_dir, step, prompt_index, texts, composed):
        if jax.process_index() != 0:  # multi-host: one process writes
            return
        path = os.path.join(run_dir, "samples", f"step_{step:06d}.jsonl")
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
        atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))

    # -------------------------------------------------------------- the loop

    def run(self, stop_after: int | None = None) -> dict:
        """Trains until config.total_steps (or `stop_after` steps of this call, for tests).

        Returns the last record of each seed: a dict, or with num_seeds > 1 a list of dicts.
        """
        c = self.config
        start = 0
        restored = self.checkpoints.restore(self.state)
        if restored is not None:
            self.state, meta = restored
            start = int(meta["step"])
            for monitor, history in zip(self.monitors, meta["monitor_history"]):
                monitor.history = list(history)
        # A fresh start drops whatever an earlier attempt wrote before its first checkpoint.
        writers = [
            metrics_log.process_writer(
                run_dir,
                resume_step=start if restored else -1,
                tensorboard=bool(c.logging.tensorboard),
                wandb_project=c.logging.wandb_project or None,
                config=dict(c.to_dict(), seed=seed, num_seeds=1),
            )
            for run_dir, seed in zip(self.run_dirs, self.seeds)
        ]
        total = int(c.total_steps)
        end = total if stop_after is None else min(total, start + stop_after)
        summaries = [{} for _ in self.seeds]
        desc = "PURE" if len(self.seeds) == 1 else f"PURE x{len(self.seeds)} seeds"
        bar = tqdm(
            total=total,
            initial=start,
            desc=desc,
            disable=not self.show_progress or jax.process_index() != 0,
            dynamic_ncols=True,
        )
        try:
            if start == 0:
                for summary, writer, record in zip(summaries, writers, self.evaluate()):
                    summary.update(writer.write(0, record))
            for step in range(start, end):
                records = self._one_step(step)
                done = step + 1
                if done % int(c.eval_every) == 0 or done == total:
                    for record, accuracy in zip(records, self.evaluate()):
                        record.update(accuracy)
                summaries = [writer.write(done, record) for writer, record in zip(writers, records)]
                if done % int(c.checkpoint_every) == 0 or done == total:
                    self.checkpoints.save(
                        done,
                        self.state,
                        {
                            "step": done,
                            "seeds": list(self.seeds),
                            "monitor_history": [m.state() for m in self.monitors],
                        },
                    )
                bar.update(1)
                bar.set_postfix(_progress(summaries))
                alarms = sorted(
                    {k for r in records for k, v in r.items() if k.startswith("train/alarm/") and v}
                )
                if alarms:
                    bar.write(
                        f"step {done}: reward-hacking alarm: {', '.join(a.split('/')[-1] for a in alarms)}"
                    )
                    if c.monitor.early_stop:
                        bar.write("stopping early (monitor.early_stop=True)")
                        break
            if summaries[0].get("step") == total:
                self.export()
        finally:
            bar.close()
            for writer in writers:
                writer.close()
        return summaries[0] if len(self.seeds) == 1 else summaries

    def export(self) -> list[str]:
        """Each seed's policy as an HF checkpoint (run_dir/policy) that `experiments.evaluate` and
        transformers load; returns the directories."""
        paths = []
        for s, (run_dir, seed) in enumerate(zip(self.run_dirs, self.seeds)):
            path = os.path.join(run_dir, "policy")
            policy = self.policy(s)  # a collective on a pod: every process gathers, process 0 writes
            if jax.process_index() == 0:
                export_pretrained(
                    policy,
                    self.task.tokenizer,
                    path,
                    {"purejax_run.json": {"step": int(self.state.step[s]), "seed": seed}},
                )
            paths.append(path)
        return paths

    def _one_step(self, step: int) -> list[dict]:
        t0 = time.perf_counter()
        prompt_index, prompt_ids, prompt_mask, out = self.rollout(step)
        tokens, mask = out.tokens, out.mask
        t1 = time.perf_counter()
        width = tokens.shape[-1]
        separators = jnp.asarray(self.separator_ids)
        step_end = np.asarray(
            self.step_ends(tokens.reshape(-1, width), mask.reshape(-1, width), separators)
        ).reshape(tokens.shape)
        scored = [
            self.score(
                step, seed, prompt_index[s], prompt_ids[s], prompt_mask[s], tokens[s], mask[s], step_end[s]
            )
            for s, seed in enumerate(self.seeds)
        ]
        t2 = time.perf_counter()
        batch = train_step_lib.RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=out.tokens,
            response_mask=out.mask,
            step_end=step_end,
            step_rewards=np.stack([composed.step_r_bt for _, _, composed in scored]).astype(np.float32),
            seq_rewards=np.stack([composed.seq_r_b for _, _, composed in scored]).astype(np.float32),
        )
        if self.partitioner is None:
            batch = jax.tree.map(jnp.asarray, batch)
        else:
            p = self.partitioner
            rows = p.seed_stacked(p.batch())
            batch = p.put(batch, jax.tree.map(lambda _: rows, batch))
        self.state, update_metrics = self.update(self.state, batch, self.update_keys)
        update_metrics = sharding.fetch(update_metrics)
        t3 = time.perf_counter()
        timing = {
            "train/time/sample_s": t1 - t0,
            "train/time/score_s": t2 - t1,
            "train/time/update_s": t3 - t2,
            "train/time/tokens_per_s": float(mask.sum()) / max(t1 - t0, 1e-9),
        }
        records = []
        for s, (texts, truths, composed) in enumerate(scored):
            record = {f"train/{k}": float(v[s]) for k, v in update_metrics.items()}
            record.update(self._rollout_record(s, tokens[s], mask[s], step_end[s], texts, truths, composed))
            record.update(timing)
            records.append(record)
            if (step + 1) % int(self.config.logging.sample_every) == 0:
                self._save_samples(self.run_dirs[s], step + 1, prompt_index[s], texts, composed)
        return records

    def _rollout_record(self, s, tokens, mask, step_end, texts, truths, composed) -> dict:
        """Seed s's rollout statistics, hacking alarms and per-source reward metrics."""
        lengths = mask.sum(1)
        truncated = lengths == mask.shape[1]
        last_tokens = tokens[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
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
        record = {f"train/{k}": v for k, v in stats.items()}
        record.update({f"train/{k}": v for k, v in self.monitors[s].update(stats).items()})
        record.update(
            {f"train/{k}": v for k, v in compose_lib.reward_metrics(composed, step_end_bt=step_end).items()}
        )
        return record


def _progress(summaries: list[dict]) -> dict:
    """The progress bar's live metrics: each key's mean over seeds."""
    out = {}
    for key in _PROGRESS_KEYS:
        values = [s[key] for s in summaries if isinstance(s.get(key), float)]
        if values:
            out[key.split("/")[-1]] = f"{np.mean(values):.3g}"
    return out


_PROGRESS_KEYS = (
    "eval/accuracy",
    "train/rollout/vr_accuracy",
    "train/rollout/process_reward_sum",
    "train/rollout/steps_mean",
    "train/rollout/length_mean",
    "train/kl_reward",
    "train/loss",
)


# ------------------------------------------------------------------ set-up from a config


def check_paths(config) -> None:
    """Fails before anything loads (a 7B model takes minutes) if a local path of the config is missing.

    One FileNotFoundError naming the field, what to download (the HF repo for
    the paper's checkpoints) and where to put it.
    """
    from purejax.data import DATA_DIR

    require_checkpoint_dir(config.policy.path, "policy.path", "the policy checkpoint")
    if any(spec.type == "prm" for spec in config.rewards.values()):
        require_checkpoint_dir(config.prm.path, "prm.path", "the PRM checkpoint")
    files = [("data.train_path", config.data.train_path)]
    files += [(f"data.eval_paths[{i}]", path) for i, path in enumerate(config.data.eval_paths)]
    for field, path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"config.{field}={path!r} is not a file. The PURE training prompts and the five "
                f"benchmarks ship in shared/data/math; set PUREJAX_DATA_DIR (now {DATA_DIR}) to their "
                f"directory or pass --config.{field}=FILE."
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

    check_paths(config)
    dtype = jnp.dtype(config.policy.dtype)
    partitioner = sharding.from_config(config)
    # On a mesh, weights load into host memory and go to the devices shard by shard.
    def on_host():
        return jax.default_device(jax.devices("cpu")[0]) if partitioner else contextlib.nullcontext()

    with on_host():
        policy = load_pretrained(config.policy.path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(config.policy.path)
    prm = None
    if any(spec.type == "prm" for spec in config.rewards.values()):
        with on_host():
            prm_model = load_pretrained(config.prm.path, dtype=jnp.dtype(config.prm.dtype))
        step_ids = tokenizer(config.prm.step_token, add_special_tokens=False)["input_ids"]
        if len(step_ids) != 1:
            raise ValueError(
                f"config.prm.step_token={config.prm.step_token!r} is {len(step_ids)} tokens; "
                "it must be exactly one token of the policy's tokenizer."
            )
        prm = scorer_for(prm_model, step_ids[0], partitioner, int(config.prm.batch_size))
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
    trainer = Trainer(config, task, workdir, show_progress=show_progress)
    summary = trainer.run()
    if jax.process_index() == 0:
        for run_dir in trainer.run_dirs:
            print(report.summarize(run_dir))
    return summary
