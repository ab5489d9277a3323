"""A task from Hugging Face checkpoints and data files: what the paper's runs use.

    task = purejax.tasks.hf.build_task(config)   # config.policy.path, config.prm.path, config.data.*

The policy and its tokenizer come from `config.policy.path`, the PRM (when a reward source
needs the "prm" scorer) from `config.prm.path`: local directories in HF format, or Hub ids
read from the local HF cache (`purejax.hub`; offline, nothing is downloaded). On a device mesh the weights load into host memory and go to the
devices shard by shard, so a 7B model never sits whole on one accelerator.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp

from purejax import data as data_lib
from purejax import sharding
from purejax.model_paths import require_checkpoint_dir
from purejax.rewards.prm import scorer_for
from purejax.rewards.sources import scorers_needed
from purejax.task import Task, step_token_id


def check_paths(config) -> dict[str, str]:
    """Fails before anything loads (a 7B model takes minutes) if a path of the config is missing.

    One FileNotFoundError naming the field, what to download (the HF repo for the paper's
    checkpoints, with the `hf download` command) and where to put it. Returns the local
    directory of each checkpoint (a Hub id resolves to its folder in the HF cache).
    """
    dirs = {"policy": require_checkpoint_dir(config.policy.path, "policy.path", "the policy checkpoint")}
    if "prm" in scorers_needed(config.rewards):
        dirs["prm"] = require_checkpoint_dir(config.prm.path, "prm.path", "the PRM checkpoint")
    data_lib.check_sources(config.data)
    return dirs


def build_task(config) -> Task:
    """Loads the policy, tokenizer, PRM and prompts named by the config (local paths only)."""
    from transformers import AutoTokenizer

    from purejax.models import load_pretrained

    dirs = check_paths(config)
    partitioner = sharding.from_config(config)

    def on_host():
        return jax.default_device(jax.devices("cpu")[0]) if partitioner else contextlib.nullcontext()

    with on_host():
        policy = load_pretrained(dirs["policy"], dtype=jnp.dtype(config.policy.dtype))
    tokenizer = AutoTokenizer.from_pretrained(dirs["policy"])
    scorers = {}
    if "prm" in scorers_needed(config.rewards):
        with on_host():
            prm_model = load_pretrained(dirs["prm"], dtype=jnp.dtype(config.prm.dtype))
        step_id = step_token_id(tokenizer, config.prm.step_token)
        scorers["prm"] = scorer_for(prm_model, step_id, partitioner, int(config.prm.batch_size))
    train_prompts, eval_prompts = data_lib.load_config_prompts(config.data)
    if config.eval.num_prompts:
        eval_prompts = eval_prompts[: int(config.eval.num_prompts)]
    return Task(policy, tokenizer, train_prompts, eval_prompts, scorers)
