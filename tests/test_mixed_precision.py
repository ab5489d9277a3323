"""Mixed precision: bf16 compute with float32 master weights trains like float32; bf16 weights
without masters barely move at the paper's learning rates (the failure it fixes).

On a tiny HF checkpoint (saved in bf16, as Qwen2.5 ships), 10 updates at lr 1e-6 on the same
batches, in three settings of (policy.dtype, policy.param_dtype):

    float32  / float32   the reference
    bfloat16 / float32   mixed precision (the default of the paper configs)
    bfloat16 / bfloat16  no master copy (what purejax did before), for the record

`python -m pytest tests/test_mixed_precision.py -s` prints the measured shares.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejax import config as config_lib
from purejax import train_step as ts
from purejax.models import load_pretrained
from tests._tiny_hf import save_tiny_hf
from tests.test_train_step import K, _batch

SETTINGS = {"float32": ("float32", "float32"), "bf16+masters": ("bfloat16", "float32"), "bf16": ("bfloat16", "bfloat16")}
STEPS, LR = 10, 1e-6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_hf(tmp_path_factory.mktemp("tiny_bf16"), "qwen2_gqa", dtype="bfloat16", vocab_size=32)


def _train(checkpoint, dtype, param_dtype):
    config = config_lib.defaults()
    config.rollout.samples_per_prompt = K
    config.advantage.update(credit="min", whiten=False)
    config.optim.lr = LR
    config.policy.update(dtype=dtype, param_dtype=param_dtype)
    optimizer = ts.make_optimizer(config)
    graphdef, state = ts.init_train_state(load_pretrained(checkpoint, dtype=jnp.dtype(dtype)), optimizer, param_dtype)
    start = jax.tree.map(lambda x: np.asarray(x, np.float64), state.params)
    step = ts.make_train_step(config, graphdef, optimizer)
    for i in range(STEPS):
        state, metrics = step(state, _batch(i), jax.random.PRNGKey(i))
        assert float(metrics["skipped"]) == 0.0
    delta = jax.tree.map(lambda new, old: np.asarray(new, np.float64) - old, state.params, start)
    return state, np.concatenate([d.ravel() for d in jax.tree.leaves(delta)])


@pytest.fixture(scope="module")
def runs(checkpoint):
    return {name: _train(checkpoint, *dtypes) for name, dtypes in SETTINGS.items()}


def test_masters_are_float32_and_the_reference_is_in_the_compute_dtype(runs):
    state, _ = runs["bf16+masters"]
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(state.ref_params)} == {jnp.dtype("bfloat16")}
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
    assert moments and {x.dtype for x in moments} == {jnp.dtype("float32")}


def test_bf16_compute_with_masters_moves_the_weights_as_float32_does(runs):
    share = {name: float(np.mean(delta != 0)) for name, (_, delta) in runs.items()}
    print(f"\nshare of weights changed after {STEPS} AdamW steps at lr {LR}: {share}")
    reference, mixed = runs["float32"][1], runs["bf16+masters"][1]
    cosine = float(reference @ mixed / (np.linalg.norm(reference) * np.linalg.norm(mixed)))
    ratio = float(np.linalg.norm(mixed) / np.linalg.norm(reference))
    print(f"bf16+masters vs float32 deltas: cosine {cosine:.4f}, norm ratio {ratio:.4f}")
    assert share["float32"] > 0.99 and share["bf16+masters"] > 0.99
    # bf16 compute perturbs the gradients a little; AdamW's normalised steps keep the direction.
    assert cosine > 0.9 and 0.9 < ratio < 1.1
    # Without masters most updates (~1e-6 on weights ~0.15, below bf16's 2^-8 relative step) round away.
    assert share["bf16"] < 0.2


def test_a_bf16_run_checkpoints_float32_masters_and_resumes_exactly(tmp_path):
    import os

    from purejax import tasks
    from purejax import trainer as trainer_lib
    from purejax.checkpoint import Checkpointer
    from purejax.metrics_log import read_metrics

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = config_lib.load(
        os.path.join(root, "configs", "smoke.py"), ["config.policy.dtype=bfloat16", "config.total_steps=2", "config.checkpoint_every=1", "config.eval_every=2"]
    )
    task = tasks.build_task(config)

    def run(workdir, stop_after=None):
        trainer = trainer_lib.Trainer(config, task, str(workdir), show_progress=False)
        trainer.run(stop_after=stop_after)
        return trainer

    whole = run(tmp_path / "whole")
    run(tmp_path / "resumed", stop_after=1)  # interrupted after the step-1 checkpoint
    resumed = run(tmp_path / "resumed")
    strip = lambda records: [{k: v for k, v in r.items() if "/time/" not in k} for r in records]  # noqa: E731
    assert strip(read_metrics(str(tmp_path / "resumed" / "metrics.jsonl"))) == strip(
        read_metrics(str(tmp_path / "whole" / "metrics.jsonl"))
    )
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(whole.state.params)):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    stored, _ = Checkpointer(str(tmp_path / "whole" / "checkpoints")).restore(whole.state)
    assert {x.dtype for x in jax.tree.leaves(stored.params)} == {jnp.dtype("float32")}
    # The sampler and the export use the compute dtype.
    assert {x.dtype for x in jax.tree.leaves(whole.compute_params())} == {jnp.dtype("bfloat16")}
    exported = os.path.join(str(tmp_path / "whole"), "policy", "config.json")
    assert '"bfloat16"' in open(exported).read()
