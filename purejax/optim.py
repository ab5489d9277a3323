"""The policy's optimiser: AdamW with global-norm clipping, its learning-rate schedule counted in
RL steps, and skipping of non-finite updates."""

from __future__ import annotations

import optax


def lr_schedule(config):
    """The learning rate as a function of the RL step (config.optim: constant or cosine, with
    linear warm-up). Every one of a step's ppo.epochs x ppo.minibatches updates uses it."""
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
    return schedule


def global_norm_clip(max_norm: float) -> optax.GradientTransformation:
    """Global-norm clipping at `max_norm`; 0 is "off", as 0 is for the other optional limits
    (optax's clip at norm 0 would zero every gradient and train nothing, silently)."""
    return optax.clip_by_global_norm(float(max_norm)) if max_norm > 0 else optax.identity()


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with global-norm clipping and the configured schedule; non-finite updates skipped.

    The schedule counts RL steps, as `total_steps` and `warmup_steps` do (verl steps its
    scheduler once per update as well): every one of a step's ppo.epochs x ppo.minibatches
    optimizer updates uses that step's learning rate. Counting updates instead would end a
    cosine decay after 1 / (epochs x minibatches) of the run.
    """
    schedule = lr_schedule(config)
    updates_per_step = int(config.ppo.epochs) * int(config.ppo.minibatches)
    per_rl_step = lambda count: schedule(count // updates_per_step)  # noqa: E731
    chain = optax.chain(
        global_norm_clip(config.optim.grad_clip),
        optax.adamw(
            per_rl_step,
            b1=float(config.optim.beta1),
            b2=float(config.optim.beta2),
            eps=1e-8,
            weight_decay=config.optim.weight_decay,
        ),
    )
    # Skipped updates leave params and moments untouched; give up only after many in a row.
    return optax.apply_if_finite(chain, max_consecutive_errors=1_000_000)
