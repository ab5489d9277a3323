"""The host loop: restore, then per step rollout -> score -> update -> log / checkpoint, then export.

    task = purejax.tasks.build_task(config)
    summary = purejax.trainer.Trainer(config, task, workdir).run()

The Python loop only moves data between jitted functions (STYLE.md rule 8): sampling
(`purejax.rollout`), host-side scoring (`purejax.scoring`) and the update
(`purejax.train_step`). Everything random is derived from (config.seed, step): the prompt
order, the sampling key, the update key, the reward subsampling and noise. A run is
therefore determined by its config, and a run resumed from its latest checkpoint writes
exactly the records an uninterrupted run writes.
"""

from __future__ import annotations

import glob
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from purejax import checkpoint as checkpoint_lib
from purejax import config as config_lib
from purejax import data as data_lib
from purejax import distributed
from purejax import metrics_log
from purejax import monitors
from purejax import preemption
from purejax import report
from purejax import rollout as rollout_lib
from purejax import run_record
from purejax import scoring
from purejax import sharding
from purejax import steps as steps_lib
from purejax import train_step as train_step_lib
from purejax import watchdog as watchdog_lib
from purejax.models import export_pretrained
from purejax.rewards import verifier
from purejax.sampling import stop_token_ids
from purejax.task import Task, encode_prompts


class Diverged(RuntimeError):
    """Every update of monitor.max_skipped_steps consecutive RL steps was non-finite."""


class PastTotalSteps(ValueError):
    """The workdir holds a run further along than config.total_steps."""


class Trainer:
    """One run in `workdir`; `run()` trains to config.total_steps, resuming if possible.

    With config.num_seeds = S > 1 the seeds config.seed, ..., config.seed + S - 1
    train in lockstep, as purejaxrl runs seeds: every array of the training state
    carries a leading seed axis, and sampling and the update are each one jitted
    call mapped over it (config.seed_map: a loop inside the call, or a vmap).
    Rewards are host-side and computed per seed. Seed s writes what a single-seed
    run with seed = config.seed + s writes (bit for bit with the loop; up to float
    rounding of the batched matmuls with vmap), into workdir/seed_<seed>/; the
    seeds share one checkpoint in workdir/checkpoints. With S = 1 everything is in
    `workdir`.

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
        self.run_dirs = metrics_log.seed_dirs(workdir, self.seeds)
        self.separator_ids = jnp.asarray(steps_lib.separator_ids(task.tokenizer, config.data.step_separator))
        self.eos_ids = stop_token_ids(task.tokenizer)
        self.pad_id = int(task.tokenizer.pad_token_id or 0)
        template, width = data_lib.prompt_template(config.data, task.tokenizer), int(r.max_prompt_len)
        self.train_ids, self.train_mask = encode_prompts(task.tokenizer, task.train_prompts, template, width)
        self.eval_ids, self.eval_mask = encode_prompts(task.tokenizer, task.eval_prompts, template, width)
        self.partitioner = p = sharding.from_config(config)
        rollout_lib.check_engine(r, p)
        if p is not None:  # fails at start-up, naming the setting
            rows = int(r.prompts_per_step) * self.k
            calls = [
                ("config.rollout.sample_batch", int(r.sample_batch))
                if int(r.sample_batch)
                else ("config.rollout.prompts_per_step x samples_per_prompt", rows),
                ("config.eval.batch_size", int(config.eval.batch_size)),
            ]
            if int(config.prm.batch_size):
                calls.append(("config.prm.batch_size", int(config.prm.batch_size)))
            p.check_rows(calls)
        # The decode layout (config.rollout.mesh_tensor), or None: sample in the training layout.
        self.rollout_partitioner = sharding.for_rollout(p, int(r.mesh_tensor))
        self.optimizer = train_step_lib.make_optimizer(config)
        self.lr = train_step_lib.lr_schedule(config)
        self.graphdef, self.state, one_seed_sharding = train_step_lib.init_seed_states(
            task.policy, self.optimizer, len(self.seeds), p, param_dtype=config.policy.param_dtype
        )
        compute = jnp.dtype(config.policy.dtype)
        # The masters cast once per use (a rollout, an evaluation, an export), not per decode step.
        self._cast = jax.jit(lambda params: train_step_lib.cast_params(params, compute))
        self._masters_cast = jnp.dtype(config.policy.param_dtype) != compute
        if self.rollout_partitioner is not None:  # the jitted reshard into the decode layout
            like = jax.eval_shape(self.compute_params)
            self._layout = rollout_lib.params_layout(like, self.rollout_partitioner)
        self.update_keys = jnp.stack([jax.random.PRNGKey(seed) for seed in self.seeds])
        if p is not None:
            self.update_keys = p.put(self.update_keys, p.replicated())
        self.update = train_step_lib.make_train_step(
            config, self.graphdef, self.optimizer, partitioner=p, state_sharding=one_seed_sharding, seed_axis=True
        )
        self.monitors = [monitors.HackingMonitor() for _ in self.seeds]
        self.skipped_streak = [0] * len(self.seeds)  # consecutive RL steps with every update skipped
        verifier.check_worker_imports()  # the one fatal verifier failure, found before any compile
        self.checkpoints = checkpoint_lib.Checkpointer(
            f"{workdir}/checkpoints", keep=int(config.logging.keep_checkpoints)
        )

    def compute_params(self):
        """The seeds' current weights in the compute dtype (the masters themselves when equal)."""
        return self._cast(self.state.params) if self._masters_cast else self.state.params

    def policy(self, seed_index: int = 0):
        """The current policy of one seed in the compute dtype, as a Decoder (on one device)."""
        params = self.compute_params()
        if self.partitioner is not None:  # global arrays: one whole host copy
            params = jax.tree.map(jnp.asarray, sharding.fetch(params))
        return nnx.merge(self.graphdef, jax.tree.map(lambda x: x[seed_index], params))

    def rollout(self, step: int):
        """Per seed: dataset indices [S, B], prompts [S, B, P] and the samples [S, B, N] (numpy)."""
        c = self.config
        index = rollout_lib.step_prompts(
            len(self.task.train_prompts), self.seeds, step, int(c.rollout.prompts_per_step), self.k
        )
        ids, mask = self.train_ids[index], self.train_mask[index]
        keys = rollout_lib.step_keys(self.seeds, step)
        params, partitioner = self.compute_params(), self.partitioner
        if self.rollout_partitioner is not None:  # once per step: weights laid out for decoding
            params, partitioner = self._layout(params), self.rollout_partitioner
        out = rollout_lib.sample_rollout(
            self.graphdef, params, ids, mask, keys, c.rollout,
            eos_ids=self.eos_ids, pad_id=self.pad_id, partitioner=partitioner, seed_map=c.seed_map,
        )  # fmt: skip
        return index, ids, mask, out

    def evaluate(self) -> list[dict[str, float]]:
        """Greedy pass@1 on the held-out prompts with the verifier, one dict per seed."""
        c = self.config
        return rollout_lib.greedy_accuracy(
            self.graphdef, self.compute_params(), self.eval_ids, self.eval_mask,
            [p.answer for p in self.task.eval_prompts], self.task.tokenizer,
            batch_size=int(c.eval.batch_size), max_new_tokens=int(c.eval.max_new_tokens),
            eos_ids=self.eos_ids, pad_id=self.pad_id, partitioner=self.partitioner, seed_map=c.seed_map,
        )  # fmt: skip

    def run(self, stop_after: int | None = None) -> list[dict]:
        """Trains until config.total_steps (or `stop_after` steps of this call, for tests).

        Returns the last record of each seed, in seed order.
        """
        c = self.config
        start, restored = 0, self.checkpoints.restore(self.state)
        if restored is not None:
            self.state, meta = restored
            run_record.check_same_config(
                meta.get("config_fingerprint"), c, self.workdir, run_record.config_fingerprint(config_lib.defaults())
            )
            start = int(meta["step"])
            for monitor, history in zip(self.monitors, meta["monitor_history"]):
                monitor.history = list(history)
            self.skipped_streak = list(meta.get("skipped_streak", self.skipped_streak))
        total = int(c.total_steps)
        if start > total:
            raise PastTotalSteps(
                f"{self.workdir} holds a run at step {start}, past total_steps={total}; raise "
                f"--config.total_steps to train further, or use a new --workdir."
            )
        run_record.write_run_record(self.workdir, c)
        if start == total:  # finished earlier: nothing to train; an export lost to a kill is redone
            if any(not os.path.isdir(f"{d}/policy") for d in self.run_dirs):
                self.export()
            return [{"step": start}] * len(self.seeds)
        # A fresh start drops whatever an earlier attempt wrote before its first checkpoint.
        writers = metrics_log.seed_writers(self.run_dirs, self.seeds, c, resume_step=start if restored else -1)
        end = total if stop_after is None else min(total, start + stop_after)
        summaries = [{} for _ in self.seeds]
        desc = "PURE" if len(self.seeds) == 1 else f"PURE x{len(self.seeds)} seeds"
        quiet = not self.show_progress or jax.process_index() != 0
        bar = tqdm(total=total, initial=start, desc=desc, disable=quiet, dynamic_ncols=True)
        stop, plots = preemption.StopRequest(), report.LivePlots()
        watchdog = watchdog_lib.StepWatchdog(c.monitor.step_timeout_s)
        try:
            if start == 0:
                watchdog.arm(0, "eval")
                summaries = [w.write(0, record) for w, record in zip(writers, self.evaluate())]
            for step in range(start, end):
                kind = watchdog_lib.step_kind(step + 1, total, int(c.eval_every), int(c.checkpoint_every))
                watchdog.arm(step + 1, kind)
                records, done = self._one_step(step), step + 1
                evaluated = done % int(c.eval_every) == 0 or done == total
                if evaluated:
                    for record, accuracy in zip(records, self.evaluate()):
                        record.update(accuracy)
                summaries = [writer.write(done, record) for writer, record in zip(writers, records)]
                if evaluated and jax.process_index() == 0:  # curves.png follows the run, not only its end
                    plots.redraw(self.run_dirs)
                preempted = stop.agreed()
                if done % int(c.checkpoint_every) == 0 or done == total or preempted:
                    self._checkpoint(done)
                if preempted:
                    bar.write(f"SIGTERM: checkpoint written at step {done}; re-run the same command to resume")
                    raise preemption.Preempted(done)
                self._check_skips(done, records)
                bar.update(1)
                bar.set_postfix(report.progress(summaries))
                alarms = sorted({k for r in records for k, v in r.items() if k.startswith("train/alarm/") and v})
                if alarms:
                    bar.write(f"step {done}: reward-hacking alarm: {', '.join(a.split('/')[-1] for a in alarms)}")
                # Process 0's verdict on every process: the alarms read host-side rewards, which can
                # differ between hosts, and a host that stopped alone would leave the others hanging.
                if c.monitor.early_stop and distributed.same_on_every_process(np.asarray(bool(alarms))):
                    bar.write("stopping early (monitor.early_stop=True)")
                    break
            if summaries[0].get("step") == total:
                self.export()
        finally:
            watchdog.close()
            stop.close()
            plots.close()
            bar.close()
            for writer in writers:
                writer.close()
        return summaries

    def _checkpoint(self, step: int) -> None:
        meta = {"step": step, "seeds": list(self.seeds), "skipped_streak": self.skipped_streak}
        meta["monitor_history"] = [m.state() for m in self.monitors]
        meta["config_fingerprint"] = run_record.config_fingerprint(self.config)
        self.checkpoints.save(step, self.state, meta)

    def _check_skips(self, step: int, records: list[dict]) -> None:
        """Ends the run, with the state checkpointed, once the weights stopped moving."""
        limit = int(self.config.monitor.max_skipped_steps)
        self.skipped_streak, stuck = monitors.skipped_streaks(self.skipped_streak, records, limit)
        if stuck is not None:
            self._checkpoint(step)
            record = records[stuck]
            raise Diverged(
                f"seed {self.seeds[stuck]}: every update of the last {limit} RL steps (through step {step}) "
                f"was skipped as non-finite (loss {record.get('train/loss')}, grad norm "
                f"{record.get('train/grad_norm')}). Lower optim.lr, check the reward weights, or raise "
                "monitor.max_skipped_steps; the last good state is checkpointed."
            )

    def export(self) -> list[str]:
        """Each seed's policy as an HF checkpoint (run_dir/policy) that `experiments.evaluate` and
        transformers load; returns the directories."""
        paths, steps = [], sharding.fetch(self.state.step)  # on every process, before the branch
        for s, (run_dir, seed) in enumerate(zip(self.run_dirs, self.seeds)):
            path = f"{run_dir}/policy"
            policy = self.policy(s)  # a collective on a pod: every process gathers, process 0 writes
            if jax.process_index() == 0:
                for stale in glob.glob(f"{run_dir}/.policy.tmp-*"):  # left by a kill mid-export
                    shutil.rmtree(stale, ignore_errors=True)
                run_info = {"purejax_run.json": {"step": int(steps[s]), "seed": seed}}
                export_pretrained(policy, self.task.tokenizer, path, run_info)
            paths.append(path)
        return paths

    def _one_step(self, step: int) -> list[dict]:
        verifier_before = verifier.pool_stats()
        t0 = time.perf_counter()
        prompt_index, prompt_ids, prompt_mask, out = self.rollout(step)
        tokens, mask = out.tokens, out.mask
        t1 = time.perf_counter()
        width = tokens.shape[-1]
        step_end = np.asarray(
            steps_lib.step_end_mask_bt(tokens.reshape(-1, width), mask.reshape(-1, width), self.separator_ids)
        ).reshape(tokens.shape)
        scored = [
            scoring.score_rollout(
                self.config, self.task, step, seed, prompt_index[s], prompt_ids[s], prompt_mask[s],
                tokens[s], mask[s], step_end[s],
            )  # fmt: skip
            for s, seed in enumerate(self.seeds)
        ]
        t2 = time.perf_counter()
        rewards = distributed.same_on_every_process(
            {
                "step_rewards": np.stack([x.composed.step_r_bt for x in scored]).astype(np.float32),
                "seq_rewards": np.stack([x.composed.seq_r_b for x in scored]).astype(np.float32),
                "dense_rewards": np.stack([x.composed.dense_r_bt for x in scored]).astype(np.float32),
            }
        )
        batch = train_step_lib.RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=tokens,
            response_mask=mask,
            step_end=step_end,
            **rewards,
        )
        if self.partitioner is None:
            batch = jax.tree.map(jnp.asarray, batch)
        else:
            rows = self.partitioner.seed_stacked(self.partitioner.batch())
            batch = self.partitioner.put(batch, jax.tree.map(lambda _: rows, batch))
        # The update is dispatched asynchronously: the rollout's host-side statistics (lengths,
        # repetition, hacking alarms) and samples are computed while it runs, not after.
        self.state, update_metrics = self.update(self.state, batch, self.update_keys)
        records = []
        for s, x in enumerate(scored):
            record = {"train/lr": float(self.lr(step))}  # the rate this step's updates used
            record.update(
                scoring.rollout_record(self.config, self.monitors[s], x, tokens[s], mask[s], step_end[s], self.eos_ids)
            )
            records.append(record)
            if (step + 1) % int(self.config.logging.sample_every) == 0:
                rows = scoring.sample_rows(self.task, prompt_index[s], x, every=self.k)
                metrics_log.write_samples(self.run_dirs[s], step + 1, rows)
        update_metrics = sharding.fetch(update_metrics)
        t3 = time.perf_counter()
        timing = {
            "train/time/sample_s": t1 - t0,
            "train/time/score_s": t2 - t1,
            "train/time/update_s": t3 - t2,  # wall time to the update's metrics, host statistics overlapped
            "train/time/tokens_per_s": float(mask.sum()) / max(t1 - t0, 1e-9),
        }
        # Verifier trouble of this step (machine-dependent, like the timings): items past the
        # batch deadline scored `wrong`, items requeued from dead workers, restarts, timeouts.
        after = verifier.pool_stats()
        timing.update({f"train/verifier/{k}": float(after[k] - verifier_before[k]) for k in after})
        return [
            {**{f"train/{k}": float(v[s]) for k, v in update_metrics.items()}, **record, **timing}
            for s, record in enumerate(records)
        ]
