"""The run configuration: its schema and defaults, validation, and loading.

A run is fully described by one locked `ml_collections.ConfigDict` (STYLE.md
rules 6, 8); `configs/*.py` build it from `defaults()` and the fragments in
`configs/common.py`. `defaults()` is the schema: every section and field, with its default
(the README's configuration reference is generated from it by `purejax.config_reference`).

Defaults follow PURE_SPEC §7 (the paper's verl runs). ConfigDict fields cannot
hold None, so "off" is spelt 0 where noted (dual_clip, top_k, ratio_guard).

`validate(config)` refuses, with ONE message naming the dotted field and the
allowed values, any unknown key (also one written into a config file; the
closest valid key is suggested), missing key, wrong type, unknown reward source
type and out-of-range value, non-finite float (or one that overflows float32), bool
given for a number, prompt template with a placeholder other than {question}, and
group baseline with one sample per prompt (every advantage would be 0).
`load(...)` imports a config, applies overrides, validates and locks.
"""

from __future__ import annotations

import os
import string
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from purejax.config_checks import (  # noqa: F401 - ConfigError is part of this module's API
    ConfigError,
    check_keys,
    check_type,
    choice,
    fail,
    items,
    non_negative,
    positive,
    type_name,
    unit,
    value_range,
)
from purejax.config_files import apply_override, import_config_module, parse_override  # noqa: F401
from purejax.credit import CREDIT_MODES
from purejax.data import BENCHMARKS, DATA_DIR, DEFAULT_PROMPT_TEMPLATE, TRAIN_FILE
from purejax.losses import KL_ESTIMATORS
from purejax.paged_kv import IMPLS as PAGED_ATTENTION
from purejax.pure import BASELINES
from purejax.reductions import LOSS_AGGREGATIONS
from purejax.rewards.sources import SOURCE_TYPES
from purejax.seed_map import MODES as SEED_MAPS


DTYPES = ("float32", "bfloat16", "float16")
APPLIES_TO = ("all", "with_answer")
LEVELS = ("step", "sequence")
REWARD_BASELINES = ("shared", "rloo")
SCHEDULES = ("constant", "cosine")
KL_IN = ("reward", "loss")
# "static": sampling.sample (every row of a call decodes until the longest ends);
# "continuous": purejax.engine (slots refilled as rows end; one device).
ROLLOUT_ENGINES = ("static", "continuous")


def defaults() -> ml_collections.ConfigDict:
    """Every field with its default (PURE_SPEC §7), rewards empty. Unlocked."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_seeds = 1
    c.seed_map = "auto"  # purejax.seed_map: how num_seeds > 1 maps over the seeds
    c.total_steps = 500  # Qwen2.5-Math runs; 1000 for Qwen2.5-7B
    c.checkpoint_every = 50
    c.eval_every = 50

    # arch: "" reads config.json in path; or a name of purejax.models.archs.ARCH_TABLE (the planner
    # needs only the shapes, no weights).
    # dtype: what the forward passes compute in; param_dtype: the trained master weights (and
    # so the AdamW moments). bf16 masters at the paper's lr 5e-7..1e-6 round most updates away.
    c.policy = ml_collections.ConfigDict(dict(path="", dtype="bfloat16", param_dtype="float32", arch=""))
    # The PRM was trained with "\n" after each step; step ends are replaced by it.
    c.prm = ml_collections.ConfigDict(
        dict(path="", step_token="\n", dtype="bfloat16", arch="", batch_size=0)  # batch_size 0: all rows
    )
    c.data = ml_collections.ConfigDict(
        dict(
            train_path=os.path.join(DATA_DIR, TRAIN_FILE),
            eval_names=BENCHMARKS,
            eval_paths=tuple(os.path.join(DATA_DIR, f"{name}.jsonl") for name in BENCHMARKS),
            question_key="",  # "": the first of purejax.data.QUESTION_KEYS the data has
            answer_key="",  # "": the first of purejax.data.ANSWER_KEYS
            prompt_template=DEFAULT_PROMPT_TEMPLATE,
            chat_template=False,  # True: the tokenizer's own chat template instead of prompt_template
            step_separator="\n\n",
        )
    )
    c.rollout = ml_collections.ConfigDict(
        dict(
            prompts_per_step=64,
            samples_per_prompt=8,
            max_prompt_len=1024,
            max_new_tokens=7168,  # verl yaml: 1024 + 7168 = 8192
            temperature=1.0,
            top_p=1.0,
            top_k=0,  # top_k 0: off
            sample_batch=0,  # rows per sampler call; 0: the whole rollout batch at once
            mesh_tensor=0,  # 0: sample in the training layout; T: weights laid out per step, T-way tensor parallel
            engine="static",  # "continuous": purejax.engine's continuous batching (one device)
            # The continuous engine's decode slots, KV page size, pool pages per layer (0: slots
            # whole rows, never an eviction) and paged attention ("auto": Pallas on GPU / TPU).
            slots=64,
            page_size=64,
            num_pages=0,
            paged_attention="auto",
        )
    )
    c.rewards = ml_collections.ConfigDict()
    c.advantage = ml_collections.ConfigDict(
        dict(
            credit="soft_min",
            temperature=0.1,
            discount=1.0,
            baseline="token_mean",
            whiten=True,
            zero_step_ends=False,  # True: OpenRLHF's default separator masking
        )
    )
    c.optim = ml_collections.ConfigDict(
        # AdamW betas: (0.9, 0.999) is verl's (torch's) default; OpenRLHF's is (0.9, 0.95).
        dict(
            lr=1e-6, weight_decay=0.0, grad_clip=1.0, schedule="constant", warmup_steps=0, beta1=0.9, beta2=0.999
        )
    )
    c.ppo = ml_collections.ConfigDict(
        dict(
            clip_eps_low=0.2,
            clip_eps_high=0.2,
            dual_clip=0.0,  # 0: off; else the dual-clip constant c > 1 (e.g. 3.0)
            epochs=1,
            minibatches=1,  # one gradient step per rollout
            micro_batches=1,  # gradient accumulation: forward/backward passes per minibatch
            logit_chunk=0,  # response positions per vocabulary projection; 0: all at once
            kl_beta=1e-3,
            kl_estimator="k3",
            kl_in="reward",
            loss_agg="token-mean",
            ratio_guard=0.0,  # 0: off; OpenRLHF zeroes the loss when mean ratio > 10.0
            remat=False,  # recompute each decoder layer's activations in the backward pass
        )
    )
    # Greedy pass@1 on the held-out prompts, every eval_every steps and at both ends.
    c.eval = ml_collections.ConfigDict(
        dict(
            num_prompts=0,  # 0: all of data.eval_paths
            batch_size=64,
            max_new_tokens=3000,
        )
    )  # the paper's evaluation limit
    c.logging = ml_collections.ConfigDict(
        dict(keep_checkpoints=3, sample_every=10, tensorboard=True, wandb_project="")
    )  # "": off; W&B logs only when installed and named here
    # Reward-hacking alarms (purejax.monitors.HackingMonitor); early_stop acts on them.
    # step_timeout_s: a step running longer ends the process (purejax.watchdog); 0 = off; -1 =
    # auto, 10x the slowest step of its kind in this process and at least 30 min.
    c.monitor = ml_collections.ConfigDict(dict(early_stop=False, max_skipped_steps=5, step_timeout_s=-1.0))
    # Device mesh (purejax.sharding): -1 = the rest of the devices; rules map the Decoder's
    # logical axis names to mesh axes (FSDP over `embed`, tensor parallelism over heads/MLP/vocab).
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, rules=_default_mesh_rules()))
    # Multi-process runs (jax.distributed.initialize); "" / 0 / -1 = from the environment.
    c.distributed = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0, process_id=-1))
    return c


def _default_mesh_rules() -> tuple:
    from purejax.sharding import DEFAULT_RULES

    return DEFAULT_RULES


def _mesh_size(path, value):
    if value == 0 or value < -1:
        fail(path, f"must be a positive mesh size or -1 (the rest of the devices), got {value!r}")


def _mesh_rules(path, value):
    from purejax.sharding import check_rules

    try:
        check_rules(value)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _step_timeout(path, value):
    if value < 0 and value != -1:
        fail(path, f"must be seconds (> 0), 0 (off) or -1 (auto: 10x the slowest step of its kind), got {value!r}")


def _process_id(path, value):
    if value < -1:
        fail(path, f"must be >= 0, or -1 (from the environment), got {value!r}")


def reward_source(type: str, **values) -> ml_collections.ConfigDict:  # noqa: A002
    """A `config.rewards` entry for source `type`, every field filled.

    Common fields default to weight 1, applies_to 'all', fraction 1, the type's
    level and baseline 'shared'; type params default to the registry's values.
    """
    if type not in SOURCE_TYPES:
        fail(
            "rewards.<name>.type",
            f"unknown reward source type {type!r}",
            allowed=sorted(SOURCE_TYPES),
            got=type,
        )
    entry = SOURCE_TYPES[type].defaults()
    for key in values:
        if key not in entry:
            fail(f"rewards.<{type}>.{key}", "unknown key", allowed=sorted(entry), got=key)
    entry.update(values)
    return ml_collections.ConfigDict(entry)


# ---------------------------------------------------------------- checks


_CHECKS: dict[str, Callable] = {
    "seed": non_negative,
    "num_seeds": positive,
    "seed_map": choice(*SEED_MAPS),
    "total_steps": positive,
    "checkpoint_every": positive,
    "eval_every": positive,
    "policy.dtype": choice(*DTYPES),
    "policy.param_dtype": choice(*DTYPES),
    "prm.dtype": choice(*DTYPES),
    "rollout.prompts_per_step": positive,
    "rollout.samples_per_prompt": positive,
    "rollout.max_prompt_len": positive,
    "rollout.max_new_tokens": positive,
    "rollout.temperature": positive,
    "rollout.top_p": value_range(0, 1, low_open=True),
    "rollout.top_k": non_negative,
    "rollout.sample_batch": non_negative,
    "rollout.engine": choice(*ROLLOUT_ENGINES),
    "rollout.slots": positive,
    "rollout.page_size": positive,
    "rollout.num_pages": non_negative,
    "rollout.paged_attention": choice(*PAGED_ATTENTION),
    "prm.batch_size": non_negative,
    "advantage.credit": choice(*CREDIT_MODES),
    "advantage.temperature": positive,
    "advantage.discount": value_range(0, 1, low_open=True),
    "advantage.baseline": choice(*BASELINES),
    "optim.lr": positive,
    "optim.weight_decay": non_negative,
    "optim.grad_clip": non_negative,
    "optim.schedule": choice(*SCHEDULES),
    "optim.warmup_steps": non_negative,
    "optim.beta1": value_range(0, 1, high_open=True),
    "optim.beta2": value_range(0, 1, high_open=True),
    "ppo.clip_eps_low": value_range(0, 1, high_open=True),
    "ppo.clip_eps_high": value_range(0, None),
    "ppo.dual_clip": value_range(1, None, low_open=True, zero_ok=True),
    "ppo.epochs": positive,
    "ppo.minibatches": positive,
    "ppo.micro_batches": positive,
    "ppo.logit_chunk": non_negative,
    "ppo.kl_beta": non_negative,
    "ppo.kl_estimator": choice(*KL_ESTIMATORS),
    "ppo.kl_in": choice(*KL_IN),
    "ppo.loss_agg": choice(*LOSS_AGGREGATIONS),
    "ppo.ratio_guard": non_negative,
    "eval.num_prompts": non_negative,
    "eval.batch_size": positive,
    "eval.max_new_tokens": positive,
    "logging.keep_checkpoints": positive,
    "logging.sample_every": positive,
    "monitor.max_skipped_steps": non_negative,
    "monitor.step_timeout_s": _step_timeout,
    "mesh.data": _mesh_size,
    "mesh.fsdp": _mesh_size,
    "mesh.tensor": _mesh_size,
    "mesh.rules": _mesh_rules,
    "distributed.num_processes": non_negative,
    "distributed.process_id": _process_id,
}


def validate(config) -> None:
    """Raises ConfigError (one message: dotted field, what is allowed) for a bad config."""
    schema = items(defaults())
    values = items(config)
    check_keys("", values, list(schema))
    for section, default in schema.items():
        value = values[section]
        if section == "rewards":
            _validate_rewards(value)
            continue
        if isinstance(default, ml_collections.ConfigDict):
            if not hasattr(value, "items"):
                fail(section, f"must be a section (ConfigDict), got {type_name(value)}")
            fields = items(value)
            check_keys(f"{section}.", fields, list(items(default)))
            for key, field_default in items(default).items():
                path = f"{section}.{key}"
                check_type(path, fields[key], field_default)
                if path in _CHECKS:
                    _CHECKS[path](path, fields[key])
        else:
            check_type(section, value, default)
            if section in _CHECKS:
                _CHECKS[section](section, value)
    _validate_cross(values)


def _validate_rewards(rewards) -> None:
    if not hasattr(rewards, "items"):
        fail("rewards", f"must be a section of reward sources, got {type_name(rewards)}")
    entries = items(rewards)
    if not entries:
        fail(
            "rewards",
            "no reward source configured; add e.g. config.rewards.prm = purejax.config.reward_source('prm')",
        )
    for name, entry in entries.items():
        base = f"rewards.{name}"
        if not hasattr(entry, "items"):
            fail(base, f"must be a reward source section, got {type_name(entry)}")
        entry = items(entry)
        kind = entry.get("type")
        if kind not in SOURCE_TYPES:
            fail(
                f"{base}.type", f"unknown reward source type {kind!r}", allowed=sorted(SOURCE_TYPES), got=kind
            )
        source = SOURCE_TYPES[kind]
        expected = source.defaults()
        check_keys(f"{base}.", entry, list(expected))
        for key, default in expected.items():
            check_type(f"{base}.{key}", entry[key], default)
        value_range(0)(f"{base}.weight", entry["weight"])
        unit(f"{base}.fraction", entry["fraction"])
        choice(*APPLIES_TO)(f"{base}.applies_to", entry["applies_to"])
        choice(source.level)(f"{base}.level", entry["level"])
        choice(*REWARD_BASELINES)(f"{base}.baseline", entry["baseline"])
        if source.level == "step" and entry["baseline"] != "shared":
            fail(
                f"{base}.baseline",
                "step-level sources share the credit-assignment baseline",
                allowed=["shared"],
                got=entry["baseline"],
            )
        if source.check is not None:  # the rules specific to this source type
            problem = source.check(entry)
            if problem is not None:
                fail(f"{base}.{problem[0]}", problem[1])


def _template_problem(template: str) -> str | None:
    """Why `template` cannot be filled by `template.format(question=...)`, or None."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:  # a lone '{' or '}'
        return f"is not a valid format string ({error}); write literal braces as '{{{{' and '}}}}'"
    others = sorted({f for f in fields if f != "question"})
    if others:
        return (
            f"may only use the placeholder {{question}}, found {', '.join('{' + f + '}' for f in others)}; "
            "write literal braces as '{{' and '}}'"
        )
    if "question" not in fields:
        return "must contain the placeholder {question}"
    return None


def _validate_cross(values) -> None:
    data = items(values["data"])
    if len(data["eval_names"]) != len(data["eval_paths"]):
        fail(
            "data.eval_paths",
            f"has {len(data['eval_paths'])} entries but data.eval_names has "
            f"{len(data['eval_names'])}; give one path per name",
        )
    names = list(data["eval_names"])
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or "/" in name:
            fail(f"data.eval_names[{i}]", f"must be a non-empty name without '/', got {name!r}")
        if names.index(name) != i:
            fail(f"data.eval_names[{i}]", f"repeats {name!r}; every evaluation set needs its own name (prompt ids are NAME/id)")
    for key in ("question_key", "answer_key"):
        if data[key] != data[key].strip():
            fail(f"data.{key}", f"must be a column name without surrounding spaces (or '' for auto), got {data[key]!r}")
    problem = _template_problem(data["prompt_template"])
    if problem:
        fail("data.prompt_template", problem)
    if not values["prm"]["step_token"]:
        fail("prm.step_token", "must be a non-empty string, e.g. '\\n'")
    rollout, ppo = items(values["rollout"]), items(values["ppo"])
    if rollout["samples_per_prompt"] == 1:
        _check_group_baselines(values)
    rows = rollout["prompts_per_step"] * rollout["samples_per_prompt"]
    if rows % ppo["minibatches"]:
        fail(
            "ppo.minibatches",
            f"must divide the {rows} responses of a step (rollout.prompts_per_step x "
            f"rollout.samples_per_prompt), got {ppo['minibatches']}",
        )
    if (rows // ppo["minibatches"]) % ppo["micro_batches"]:
        fail(
            "ppo.micro_batches",
            f"must divide the {rows // ppo['minibatches']} responses of a minibatch "
            f"(rollout.prompts_per_step x rollout.samples_per_prompt / ppo.minibatches), "
            f"got {ppo['micro_batches']}",
        )
    if rollout["sample_batch"] and rows % rollout["sample_batch"]:
        fail(
            "rollout.sample_batch",
            f"must divide the {rows} responses of a step (or be 0 for all at once), "
            f"got {rollout['sample_batch']}",
        )
    if ppo["logit_chunk"] and rollout["max_new_tokens"] % ppo["logit_chunk"]:
        fail(
            "ppo.logit_chunk",
            f"must divide rollout.max_new_tokens={rollout['max_new_tokens']} (or be 0 for no chunking), "
            f"got {ppo['logit_chunk']}",
        )


def _check_group_baselines(values) -> None:
    """With one sample per prompt a group baseline subtracts each response's own value: every
    advantage is exactly 0 and training does nothing, so it is refused rather than warned about."""
    advantage = items(values["advantage"])
    fix = "set rollout.samples_per_prompt >= 2 (the paper uses 8)"
    if advantage["baseline"] != "none":
        fail(
            "advantage.baseline",
            f"{advantage['baseline']!r} compares the samples of one prompt, but "
            f"rollout.samples_per_prompt=1 leaves it one sample, so every advantage is 0; {fix}, "
            "or set advantage.baseline='none'",
        )
    for name, entry in items(values["rewards"]).items():
        if items(entry)["baseline"] == "rloo":
            fail(
                f"rewards.{name}.baseline",
                f"'rloo' needs several samples per prompt, but rollout.samples_per_prompt=1 makes "
                f"this source's advantage 0; {fix}, or set rewards.{name}.baseline='shared'",
            )


# ---------------------------------------------------------------- loading


def load(
    source,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    check: Callable[[ml_collections.ConfigDict], None] | None = None,
) -> ml_collections.ConfigDict:
    """Imports a config (file path, `file.py:arg` for `get_config(arg)`, module name or module),
    applies overrides ({'rewards.vr.weight': 2} or ['rewards.vr.weight=2']),
    validates it and returns it locked.

    `check` validates configs of another schema (the warm start's, the PRM
    trainer's); the default is this module's `validate`, for training runs."""
    arg = None
    if isinstance(source, str) and ".py:" in source:  # big_vision's `--config=file.py:arg`
        source, arg = source.split(".py:", 1)
        source += ".py"
    module = import_config_module(source)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"load: {getattr(module, '__file__', module)} has no get_config().")
    try:
        config = module.get_config() if arg is None else module.get_config(arg)
    except TypeError as error:
        if arg is None:
            raise
        raise ConfigError(f"load: {source}:{arg}: this get_config() takes no argument ({error}).") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"load: get_config() must return an ml_collections.ConfigDict, got {type(config).__name__}."
        )
    if overrides:
        pairs = (
            overrides.items() if isinstance(overrides, Mapping) else [parse_override(o) for o in overrides]
        )
        for key, value in pairs:
            apply_override(config, key, value)
    (check or validate)(config)
    config.lock()
    return config
