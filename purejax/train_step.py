"""The jitted PURE update: one rollout batch in, new parameters out.

    step(state, batch, rng) -> (state, metrics)

Inside one jit, with fixed shapes:
  1. log-probs of the sampled responses under the current policy (the PPO
     "old" policy; recomputed, never taken from the sampler, so sampler/trainer
     numerics cannot skew the ratio) and under the frozen reference policy;
  2. the KL penalty, as a per-token reward (-beta kl_t, credited in sum form)
     or as a loss term;
  3. advantages from step rewards with `purejax.pure_advantages`;
  4. PPO epochs x minibatches as nested `lax.scan`s: clipped surrogate,
     aggregated as configured, AdamW with global-norm clipping; an update
     whose loss or gradient is not finite is skipped (optax.apply_if_finite),
     as is one whose mean ratio exceeds `ratio_guard` (OpenRLHF's guard).

Reads config sections `ppo`, `optim`, `advantage` and
`rollout.samples_per_prompt` (see configs/common.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from purejax import losses
from purejax import pure
from purejax import reductions
from purejax import sharding


class RolloutBatch(NamedTuple):
    """B = prompts x samples_per_prompt responses, the samples of a prompt contiguous."""

    prompt_ids: jnp.ndarray  # int32[B, P], left-padded
    prompt_mask: jnp.ndarray  # bool[B, P]
    response_ids: jnp.ndarray  # int32[B, T], right-padded
    response_mask: jnp.ndarray  # bool[B, T], through the EOS
    step_end: jnp.ndarray  # bool[B, T]
    step_rewards: jnp.ndarray  # float32[B, T], step-level rewards on step ends
    seq_rewards: jnp.ndarray  # float32[B], sequence rewards with their own RLOO baseline


class TrainState(NamedTuple):
    params: Any  # nnx.State of the policy's nnx.Param leaves
    ref_params: Any  # frozen copy: the KL anchor
    opt_state: Any
    step: jnp.ndarray  # int32 scalar: updates done


@dataclasses.dataclass(frozen=True)
class PPOSettings:
    """The static part of the update, read once from the config."""

    samples_per_prompt: int
    advantage: pure.AdvantageConfig
    clip_eps_low: float
    clip_eps_high: float
    dual_clip: float | None
    epochs: int
    minibatches: int
    kl_beta: float
    kl_estimator: str
    kl_in: str
    loss_agg: str
    ratio_guard: float | None
    remat: bool = False

    @classmethod
    def from_config(cls, config) -> "PPOSettings":
        ppo = config.ppo
        return cls(
            samples_per_prompt=int(config.rollout.samples_per_prompt),
            advantage=pure.AdvantageConfig.from_config(config.advantage),
            clip_eps_low=float(ppo.clip_eps_low),
            clip_eps_high=float(ppo.clip_eps_high),
            # Configs hold 0 for "off": ConfigDict fields keep one type.
            dual_clip=float(ppo.dual_clip) or None,
            epochs=int(ppo.epochs),
            minibatches=int(ppo.minibatches),
            kl_beta=float(ppo.kl_beta),
            kl_estimator=str(ppo.kl_estimator),
            kl_in=str(ppo.kl_in),
            loss_agg=str(ppo.loss_agg),
            ratio_guard=float(ppo.ratio_guard) or None,
            remat=bool(ppo.remat),
        )


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with global-norm clipping and the configured schedule; non-finite updates skipped."""
    optim = config.optim
    if optim.schedule == "constant":
        schedule = optax.constant_schedule(optim.lr)
    elif optim.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, optim.lr, max(int(optim.warmup_steps), 1), max(int(config.total_steps), 2)
        )
    else:
        raise ValueError(
            f"optim.schedule: unknown schedule {optim.schedule!r}; allowed: 'constant', 'cosine'."
        )
    if optim.schedule == "constant" and optim.warmup_steps:
        schedule = optax.linear_schedule(0.0, optim.lr, int(optim.warmup_steps))
        schedule = optax.join_schedules(
            [schedule, optax.constant_schedule(optim.lr)], [int(optim.warmup_steps)]
        )
    chain = optax.chain(
        optax.clip_by_global_norm(optim.grad_clip),
        optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=optim.weight_decay),
    )
    # Skipped updates leave params and moments untouched; give up only after many in a row.
    return optax.apply_if_finite(chain, max_consecutive_errors=1_000_000)


def init_train_state(model: nnx.Module, optimizer: optax.GradientTransformation):
    """Splits a policy into (graphdef, TrainState); the reference policy is a frozen copy."""
    graphdef, params = nnx.split(model, nnx.Param)
    # Copies: the step donates its state, which must not delete the caller's model arrays.
    params = jax.tree.map(jnp.copy, params)
    ref_params = jax.tree.map(jnp.copy, params)
    return graphdef, TrainState(params, ref_params, optimizer.init(params), jnp.zeros((), jnp.int32))


def response_logits(graphdef, params, rest, batch: RolloutBatch, remat: bool = False) -> jnp.ndarray:
    """Policy logits predicting each response token: float32[B, T, V]."""
    model = nnx.merge(graphdef, params, *rest)
    ids = jnp.concatenate([batch.prompt_ids, batch.response_ids], axis=1)
    mask = jnp.concatenate([batch.prompt_mask, batch.response_mask], axis=1)
    p, t = batch.prompt_ids.shape[1], batch.response_ids.shape[1]
    # Position p - 1 + i predicts response token i; the vocabulary projection is
    # applied to those T positions only, not to the prompt.
    return model.head(model.hidden_states(ids, mask, remat=remat)[:, p - 1 : p + t - 1])


def _logp_of(logits_btv, ids_bt):
    target = jnp.take_along_axis(logits_btv, ids_bt[..., None], axis=-1)[..., 0]
    return target - jax.nn.logsumexp(logits_btv, axis=-1)


def make_train_step(
    config,
    graphdef,
    optimizer: optax.GradientTransformation,
    rest=(),
    partitioner=None,
    state_sharding=None,
    seed_axis: bool = False,
):
    """Builds the jitted `step(state, batch, rng) -> (state, metrics)`.

    Args:
      config: the experiment ConfigDict (sections ppo, optim, advantage, rollout).
      graphdef: the policy's nnx GraphDef from `init_train_state`.
      optimizer: from `make_optimizer(config)`.
      rest: non-Param nnx state of the policy (usually empty), merged back as is.
      partitioner: a `purejax.sharding.Partitioner`, or None for one device. With one, the
        step is jitted with in/out shardings (state as `state_sharding`, the batch's rows over
        data x fsdp, rng and metrics replicated) and traced under the mesh.
      state_sharding: `partitioner.tree(state)`, the TrainState's shardings (of one seed).
      seed_axis: vmap the step over a leading seed axis of state, batch, rng and metrics
        (config.num_seeds, as purejaxrl runs seeds); each seed's slice is sharded as one
        seed's state would be.
    """
    s = PPOSettings.from_config(config)

    def sequence_logp(params, batch):
        return _logp_of(response_logits(graphdef, params, rest, batch), batch.response_ids)

    def loss_fn(params, mb: RolloutBatch, old_logp, ref_logp, adv):
        logits = response_logits(graphdef, params, rest, mb, remat=s.remat)
        logp = _logp_of(logits, mb.response_ids)
        # Entropy only here: the old and reference passes need log-probs, not a second [B, T, V] softmax.
        entropy = jax.vmap(losses.entropy_from_logits)(logits)
        mask = mb.response_mask
        pg_bt = jax.vmap(losses.clipped_surrogate_loss, (0, 0, 0, None, None, None))(
            logp, old_logp, adv, s.clip_eps_low, s.clip_eps_high, s.dual_clip
        )
        pg = reductions.aggregate_loss(pg_bt, mask, s.loss_agg).mean()
        kl_bt = jax.vmap(losses.kl_penalty, (0, 0, None))(logp, ref_logp, s.kl_estimator)
        kl = reductions.masked_mean(kl_bt, mask)
        loss = pg + (s.kl_beta * kl if s.kl_in == "loss" else 0.0)
        ratio = jnp.exp(logp - old_logp)
        clipped = jax.vmap(losses.ratio_clipped, (0, 0, 0, None, None))(
            logp, old_logp, adv, s.clip_eps_low, s.clip_eps_high
        )
        aux = dict(
            pg_loss=pg,
            kl_loss=kl,
            entropy=reductions.masked_mean(entropy, mask),
            clip_fraction=reductions.masked_mean(clipped.astype(jnp.float32), mask),
            ratio_mean=reductions.masked_mean(ratio, mask),
        )
        if s.ratio_guard is not None:
            # OpenRLHF zeroes the loss of a batch whose mean ratio has run away.
            loss = jnp.where(aux["ratio_mean"] > s.ratio_guard, 0.0, loss)
        return loss, aux

    def step(state: TrainState, batch: RolloutBatch, rng):
        rng = jax.random.fold_in(rng, state.step)
        old_logp = sequence_logp(state.params, batch)
        ref_logp = sequence_logp(state.ref_params, batch)
        old_logp, ref_logp = jax.lax.stop_gradient((old_logp, ref_logp))
        mask = batch.response_mask
        kl_bt = jax.vmap(losses.kl_penalty, (0, 0, None))(old_logp, ref_logp, s.kl_estimator) * mask
        dense = -s.kl_beta * kl_bt if s.kl_in == "reward" else None
        advantages = pure.pure_advantages(
            batch.step_rewards,
            batch.step_end,
            mask,
            s.samples_per_prompt,
            s.advantage,
            seq_r_b=batch.seq_rewards,
            dense_r_bt=dense,
        )
        rows = batch.response_ids.shape[0]
        if rows % s.minibatches:
            raise ValueError(f"ppo.minibatches={s.minibatches} must divide the batch of {rows} responses.")
        per_mb = rows // s.minibatches

        def run_minibatch(carry, rows_idx):
            params, opt_state = carry
            # A gather along the sharded row axis would come out replicated (every device
            # computing every row); keep the minibatch's rows split over data x fsdp.
            take = lambda x: sharding.constrain(jnp.take(x, rows_idx, axis=0), ("batch",))
            mb = jax.tree.map(take, batch)
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, mb, take(old_logp), take(ref_logp), take(advantages.advantages)
            )
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            grad_norm = optax.global_norm(grads)
            finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            # apply_if_finite already zeroes the update; also keep NaN params out of the carry.
            new_params = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_params, params)
            metrics = dict(aux, loss=loss, grad_norm=grad_norm, skipped=(~finite).astype(jnp.float32))
            return (new_params, new_opt_state), metrics

        def run_epoch(carry, epoch_rng):
            order = jax.random.permutation(epoch_rng, rows) if s.minibatches > 1 else jnp.arange(rows)
            return jax.lax.scan(run_minibatch, carry, order.reshape(s.minibatches, per_mb))

        epoch_rngs = jax.random.split(rng, s.epochs)
        (params, opt_state), metrics = jax.lax.scan(run_epoch, (state.params, state.opt_state), epoch_rngs)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics.update(
            kl_reward=reductions.masked_mean(kl_bt, mask),
            advantage_mean=reductions.masked_mean(advantages.advantages, mask),
            advantage_std=jnp.sqrt(reductions.masked_var(advantages.advantages, mask)),
            return_mean=reductions.masked_mean(advantages.returns, mask),
            return_max=jnp.max(jnp.where(mask, advantages.returns, -jnp.inf)),
            return_min=jnp.min(jnp.where(mask, advantages.returns, jnp.inf)),
        )
        return TrainState(params, state.ref_params, opt_state, state.step + 1), metrics

    fn = jax.vmap(step) if seed_axis else step
    if partitioner is None:
        return jax.jit(fn, donate_argnums=0)
    if state_sharding is None:
        raise ValueError("make_train_step: pass state_sharding=partitioner.tree(state) with a partitioner.")
    batch_sharding, replicated = partitioner.batch(), partitioner.replicated()
    if seed_axis:
        state_sharding, batch_sharding = partitioner.seed_stacked((state_sharding, batch_sharding))
    return partitioner.jit(
        fn,
        in_shardings=(state_sharding, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
