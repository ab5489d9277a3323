"""The jitted PURE update: one rollout batch in, new parameters out.

    step(state, batch, rng) -> (state, metrics)

Inside one jit, with fixed shapes:
  1. log-probs of the sampled responses under the current policy (the PPO
     "old" policy; recomputed, never taken from the sampler, so sampler/trainer
     numerics cannot skew the ratio) and under the frozen reference policy;
  2. the KL penalty, as a per-token reward (-beta kl_t, a dense reward added after
     the credit transform, as verl does) or as a loss term;
  3. advantages from step rewards with `purejax.pure_advantages` (dense rewards:
     the KL penalty plus `RolloutBatch.dense_rewards`, e.g. verl's shared VR);
  4. PPO epochs x minibatches as nested `lax.scan`s: clipped surrogate,
     aggregated as configured, AdamW with global-norm clipping; an update
     whose loss, gradient, update or new parameters are not finite is skipped
     (params and optimizer state unchanged, counted in metrics["skipped"]);
     a micro-batch whose mean over sequences of the per-sequence mean ratio
     exceeds `ratio_guard` contributes no loss (OpenRLHF's guard).

Reads config sections `ppo`, `optim`, `advantage` and
`rollout.samples_per_prompt` (see configs/common.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from purejax import losses
from purejax.optim import lr_schedule, make_optimizer  # noqa: F401 - part of this module's API
from purejax import pure
from purejax import reductions
from purejax import seed_map as seed_map_lib
from purejax import sharding
from purejax.rewards.compose import dense_source_names


class RolloutBatch(NamedTuple):
    """B = prompts x samples_per_prompt responses, the samples of a prompt contiguous."""

    prompt_ids: jnp.ndarray  # int32[B, P], left-padded
    prompt_mask: jnp.ndarray  # bool[B, P]
    response_ids: jnp.ndarray  # int32[B, T], right-padded
    response_mask: jnp.ndarray  # bool[B, T], through the EOS
    step_end: jnp.ndarray  # bool[B, T]
    step_rewards: jnp.ndarray  # float32[B, T], step-level rewards on step ends
    seq_rewards: jnp.ndarray  # float32[B], sequence rewards with their own RLOO baseline
    # float32[B, T] rewards added after the credit transform ('shared' sequence sources on
    # the last token: ComposedRewards.dense_r_bt); None when the config has no such source.
    dense_rewards: jnp.ndarray | None = None


class TrainState(NamedTuple):
    params: Any  # nnx.State of the policy's nnx.Param leaves: the master copy, in policy.param_dtype
    ref_params: Any  # frozen copy in the compute dtype (policy.dtype): the KL anchor
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
    micro_batches: int
    logit_chunk: int
    kl_beta: float
    kl_estimator: str
    kl_in: str
    loss_agg: str
    ratio_guard: float | None
    remat: bool = False
    # Names of the 'shared' sequence reward sources, which arrive in RolloutBatch.dense_rewards.
    dense_sources: tuple[str, ...] = ()

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
            micro_batches=int(ppo.micro_batches),
            logit_chunk=int(ppo.logit_chunk),
            kl_beta=float(ppo.kl_beta),
            kl_estimator=str(ppo.kl_estimator),
            kl_in=str(ppo.kl_in),
            loss_agg=str(ppo.loss_agg),
            ratio_guard=float(ppo.ratio_guard) or None,
            remat=bool(ppo.remat),
            dense_sources=_dense_sources(config),
        )


def _dense_sources(config) -> tuple[str, ...]:
    """The reward sources `compose_rewards` puts in `dense_r_bt` ('shared' sequence sources)."""
    return dense_source_names(getattr(config, "rewards", None) or {})


def guard_ratio(ratio_bt, mask_bt) -> jnp.ndarray:
    """The statistic OpenRLHF's ratio guard compares with its limit (10): mean_b [mean_t ratio].

    Each response's token-mean ratio, averaged over responses (rows without valid
    tokens left out), as OpenRLHF's PolicyLoss does (main branch,
    openrlhf/models/loss.py: masked_mean(ratio, action_mask, dim=-1).mean()). A
    short response whose ratio ran away weighs as much as a long one, where a
    token mean would dilute it.
    """
    return reductions.aggregate_loss(ratio_bt, mask_bt, "seq-mean-token-mean").mean()


def cast_params(params, dtype):
    """`params` with every floating leaf in `dtype`; leaves already in it are returned as they are
    (so a float32 run casts nothing). Inside a differentiated function the gradient flows back
    through the cast to the master copy in its own dtype."""
    dtype = jnp.dtype(dtype)

    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype else x

    return jax.tree.map(cast, params)


def _compute_dtype(params):
    """The dtype of the floating leaves of `params` (the reference policy, as loaded)."""
    return next(x.dtype for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating))


def _new_state(params, optimizer: optax.GradientTransformation, param_dtype=None) -> TrainState:
    """Masters in `param_dtype` (default: the model's), the frozen reference as loaded."""
    # Copies: the step donates its state, which must not delete the caller's model arrays.
    ref_params = jax.tree.map(jnp.copy, params)
    masters = jax.tree.map(jnp.copy, params if param_dtype is None else cast_params(params, param_dtype))
    return TrainState(masters, ref_params, optimizer.init(masters), jnp.zeros((), jnp.int32))


def init_train_state(model: nnx.Module, optimizer: optax.GradientTransformation, param_dtype=None):
    """Splits a policy into (graphdef, TrainState); the reference policy is a frozen copy.

    The model comes in the compute dtype (its graphdef keeps it: the KV cache uses it); with
    `param_dtype` (config.policy.param_dtype) the trained master copy is kept in that dtype.
    """
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, _new_state(params, optimizer, param_dtype)


def init_seed_states(
    model: nnx.Module, optimizer: optax.GradientTransformation, num_seeds: int, partitioner=None, param_dtype=None
):
    """(graphdef, TrainState with a leading seed axis on every leaf, one seed's shardings or None).

    Every seed starts from the same policy; they differ in prompts, samples and rewards.
    With a partitioner the state is built shard by shard as global arrays, so a 7B policy's
    reference copy and AdamW moments never exist whole on one device.
    """
    graphdef, params = nnx.split(model, nnx.Param)
    new = lambda p: _new_state(p, optimizer, param_dtype)  # noqa: E731
    stack = lambda state: jax.tree.map(lambda x: jnp.stack([x] * num_seeds), state)  # noqa: E731
    if partitioner is None:
        return graphdef, stack(new(params)), None
    one_seed = partitioner.tree(jax.eval_shape(new, params))
    build = jax.jit(lambda p: stack(new(p)), out_shardings=partitioner.seed_stacked(one_seed))
    return graphdef, build(partitioner.place(params)), one_seed


def response_logits(graphdef, params, rest, batch: RolloutBatch, remat: bool = False) -> jnp.ndarray:
    """Policy logits predicting each response token: float32[B, T, V]."""
    model, h_btd = _response_hidden(graphdef, params, rest, batch, remat)
    return model.head(h_btd)


def response_logp(
    graphdef, params, rest, batch: RolloutBatch, remat: bool = False, chunk: int = 0, entropy: bool = False
):
    """Log-probs of the response tokens under the policy, float32[B, T] (and entropies [B, T]).

    chunk > 0 projects `chunk` response positions at a time to the vocabulary inside a
    rematerialised loop, so at most [B, chunk, V] float32 logits exist at once, in the
    forward and the backward pass, instead of [B, T, V] (T = 8192 and V = 152064 make the
    latter 5 GB per row). chunk = 0 projects all T positions at once.
    """
    model, h_btd = _response_hidden(graphdef, params, rest, batch, remat)
    ids_bt = batch.response_ids

    def project(h, ids):
        logits = model.head(h)
        logp = _logp_of(logits, ids)
        return (logp, jax.vmap(losses.entropy_from_logits)(logits)) if entropy else (logp,)

    b, t = ids_bt.shape
    if not chunk or chunk >= t:
        out = project(h_btd, ids_bt)
    else:
        n = t // chunk  # checked by the config: chunk divides T
        h_nbcd = h_btd.reshape(b, n, chunk, -1).swapaxes(0, 1)
        ids_nbc = ids_bt.reshape(b, n, chunk).swapaxes(0, 1)
        out = jax.lax.map(lambda xs: jax.checkpoint(project)(*xs), (h_nbcd, ids_nbc))
        out = tuple(x.swapaxes(0, 1).reshape(b, t) for x in out)
    return out if entropy else out[0]


def _response_hidden(graphdef, params, rest, batch: RolloutBatch, remat: bool):
    model = nnx.merge(graphdef, params, *rest)
    ids = jnp.concatenate([batch.prompt_ids, batch.response_ids], axis=1)
    mask = jnp.concatenate([batch.prompt_mask, batch.response_mask], axis=1)
    p, t = batch.prompt_ids.shape[1], batch.response_ids.shape[1]
    # Position p - 1 + i predicts response token i; the vocabulary projection is
    # applied to those T positions only, not to the prompt.
    return model, model.hidden_states(ids, mask, remat=remat)[:, p - 1 : p + t - 1]


def _logp_of(logits_btv, ids_bt):
    target = jnp.take_along_axis(logits_btv, ids_bt[..., None], axis=-1)[..., 0]
    return target - jax.nn.logsumexp(logits_btv, axis=-1)


def _all_finite(tree) -> jnp.ndarray:
    """bool[]: every element of every floating leaf of `tree` is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)


def _take_rows(tree, rows_idx):
    """Rows `rows_idx` of every array in `tree`. A gather along the sharded row axis would come
    out replicated (every device computing every row); keep the rows split over data x fsdp."""
    return jax.tree.map(lambda x: sharding.constrain(jnp.take(x, rows_idx, axis=0), ("batch",)), tree)


def _strided_chunks(rows_idx, num_chunks: int):
    """[num_chunks, rows / num_chunks] row indices, chunk i = rows i, i + num_chunks, ...: with
    rows sharded over devices in contiguous blocks, every chunk draws from every device."""
    return rows_idx.reshape(-1, num_chunks).T


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
      seed_axis: map the step over a leading seed axis of state, batch, rng and metrics
        (config.num_seeds, as purejaxrl runs seeds), as config.seed_map says
        (`purejax.seed_map`); each seed's slice is sharded as one seed's state would be.
    """
    s = PPOSettings.from_config(config)
    if partitioner is not None and state_sharding is None:
        raise ValueError("make_train_step: pass state_sharding=partitioner.tree(state) with a partitioner.")

    def sequence_logp(params, batch):
        """[B, T] log-probs without gradients, `micro_batches` x `minibatches` row chunks at a time."""
        rows = batch.response_ids.shape[0]
        chunks = s.minibatches * s.micro_batches

        def logp(mb):
            # remat also scans the layers here (no gradient: the recomputation never runs),
            # so these forward passes keep one layer's activations at a time.
            return response_logp(graphdef, params, rest, mb, remat=s.remat, chunk=s.logit_chunk)

        if chunks == 1:
            return logp(batch)
        idx_cr = _strided_chunks(jnp.arange(rows), chunks)
        out_crt = jax.lax.map(lambda idx: logp(_take_rows(batch, idx)), idx_cr)
        return out_crt.swapaxes(0, 1).reshape(rows, -1)  # row j * chunks + c is out[c, j]

    def loss_fn(params, mb: RolloutBatch, old_logp, ref_logp, adv, pg_count, token_count, *, compute_dtype):
        """One micro-batch's share of the minibatch loss, normalised by the whole minibatch's
        counts (pg_count: aggregate_loss's count; token_count: valid tokens), so that summing
        the micro-batches' losses and gradients gives the minibatch's exactly."""
        logp, entropy = response_logp(
            graphdef, cast_params(params, compute_dtype), rest, mb, remat=s.remat, chunk=s.logit_chunk, entropy=True
        )
        mask = mb.response_mask
        pg_bt = jax.vmap(losses.clipped_surrogate_loss, (0, 0, 0, None, None, None))(
            logp, old_logp, adv, s.clip_eps_low, s.clip_eps_high, s.dual_clip
        )
        pg = reductions.aggregate_loss(pg_bt, mask, s.loss_agg).total / pg_count
        kl_bt = jax.vmap(losses.kl_penalty, (0, 0, None))(logp, ref_logp, s.kl_estimator)
        kl = reductions.masked_sum(kl_bt, mask) / token_count
        loss = pg + (s.kl_beta * kl if s.kl_in == "loss" else 0.0)
        ratio = jnp.exp(logp - old_logp)
        clipped = jax.vmap(losses.ratio_clipped, (0, 0, 0, None, None))(
            logp, old_logp, adv, s.clip_eps_low, s.clip_eps_high
        )
        aux = dict(
            pg_loss=pg,
            kl_loss=kl,
            entropy=reductions.masked_sum(entropy, mask) / token_count,
            clip_fraction=reductions.masked_sum(clipped.astype(jnp.float32), mask) / token_count,
            ratio_mean=reductions.masked_sum(ratio, mask) / token_count,
        )
        if s.ratio_guard is not None:
            # OpenRLHF zeroes the loss of a batch whose mean ratio has run away (with
            # micro-batches: of a micro-batch whose mean ratio has).
            loss = jnp.where(guard_ratio(ratio, mask) > s.ratio_guard, 0.0, loss)
        return loss, aux

    def minibatch_grads(params, batch, old_logp, ref_logp, adv, rows_idx, compute_dtype):
        """(loss, aux, grads) of one minibatch, accumulated over `micro_batches` passes."""
        mask = _take_rows(batch.response_mask, rows_idx)
        counts = (
            jnp.maximum(reductions.aggregate_loss(jnp.zeros(mask.shape), mask, s.loss_agg).count, 1e-12),
            jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0),
        )

        def micro(idx):
            mb, old, ref, a = _take_rows((batch, old_logp, ref_logp, adv), idx)
            grad_fn = jax.value_and_grad(functools.partial(loss_fn, compute_dtype=compute_dtype), has_aux=True)
            (loss, aux), grads = grad_fn(params, mb, old, ref, a, *counts)
            return loss, aux, grads

        if s.micro_batches == 1:
            return micro(rows_idx)

        def accumulate(total, idx):
            # Gradients add up in float32 whatever the parameter dtype.
            part = jax.tree.map(lambda x: x.astype(jnp.float32), micro(idx))
            return jax.tree.map(jnp.add, total, part), None

        chunks = _strided_chunks(rows_idx, s.micro_batches)
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), jax.eval_shape(micro, chunks[0]))
        total, _ = jax.lax.scan(accumulate, zeros, chunks)
        return total

    def step(state: TrainState, batch: RolloutBatch, rng):
        rows = batch.response_ids.shape[0]
        if rows % s.minibatches:
            raise ValueError(f"ppo.minibatches={s.minibatches} must divide the batch of {rows} responses.")
        if (rows // s.minibatches) % s.micro_batches:
            raise ValueError(
                f"ppo.micro_batches={s.micro_batches} must divide the {rows // s.minibatches} responses "
                "of a minibatch."
            )
        rng = jax.random.fold_in(rng, state.step)
        # One cast of the masters per step for both no-gradient passes' weights.
        # The model's compute dtype is the frozen reference's (the policy as loaded, policy.dtype);
        # the masters are cast to it for every forward pass, once per step for the no-gradient ones.
        compute_dtype = _compute_dtype(state.ref_params)
        old_logp = sequence_logp(cast_params(state.params, compute_dtype), batch)
        ref_logp = sequence_logp(state.ref_params, batch)
        old_logp, ref_logp = jax.lax.stop_gradient((old_logp, ref_logp))
        mask = batch.response_mask
        kl_bt = jax.vmap(losses.kl_penalty, (0, 0, None))(old_logp, ref_logp, s.kl_estimator) * mask
        dense = -s.kl_beta * kl_bt if s.kl_in == "reward" else None
        if batch.dense_rewards is not None:
            dense = batch.dense_rewards if dense is None else dense + batch.dense_rewards
        elif s.dense_sources:
            # Fails at trace time: a batch built without them would silently train without
            # the shared VR.
            raise ValueError(
                f"RolloutBatch.dense_rewards is None, but rewards.{s.dense_sources[0]} is a sequence "
                "source with baseline 'shared', which arrives there: pass "
                "dense_rewards=ComposedRewards.dense_r_bt."
            )
        advantages = pure.pure_advantages(
            batch.step_rewards,
            batch.step_end,
            mask,
            s.samples_per_prompt,
            s.advantage,
            seq_r_b=batch.seq_rewards,
            dense_r_bt=dense,
        )
        per_mb = rows // s.minibatches

        def run_minibatch(carry, rows_idx):
            params, opt_state = carry
            loss, aux, grads = minibatch_grads(
                params, batch, old_logp, ref_logp, advantages.advantages, rows_idx, compute_dtype
            )
            grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            grad_norm = optax.global_norm(grads)
            # Finite gradients can still give a non-finite update (a learning rate that is inf
            # in float32) or overflowing parameters; apply_if_finite sees only the gradients.
            finite = (
                jnp.isfinite(loss)
                & jnp.isfinite(grad_norm)
                & _all_finite(updates)
                & _all_finite(new_params)
            )
            # A skipped update changes nothing: neither the params nor the moments and count.
            new_params, new_opt_state = jax.tree.map(
                lambda n, o: jnp.where(finite, n, o), (new_params, new_opt_state), (params, opt_state)
            )
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

    fn = seed_map_lib.over_seeds(step, config.seed_map) if seed_axis else step
    if partitioner is None:
        return jax.jit(fn, donate_argnums=0)
    batch_sharding, replicated = partitioner.batch(), partitioner.replicated()
    if seed_axis:
        state_sharding, batch_sharding = partitioner.seed_stacked((state_sharding, batch_sharding))
    return partitioner.jit(
        fn,
        in_shardings=(state_sharding, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
