"""purejax: process-supervised RL for LLM reasoning in JAX (PURE, arXiv 2504.15275).

Version floors are the oldest releases we test against; the ceilings keep out
the next major/minor series whose APIs (Flax NNX, orbax) change without notice.
"""
from setuptools import find_packages, setup

_HF = ["datasets>=3.0", "pyarrow>=15.0"]

setup(
    name="purejax",
    version="0.1.0",
    description="PURE: min-form credit assignment for PRM-based RL of LLM reasoning, in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["purejax", "purejax.*"]),
    # The PURE training prompts and the five benchmarks (purejax/data_files/math/provenance.json):
    # installed with the code, so a wheel or a non-editable install needs nothing beside it.
    package_data={"purejax": ["data_files/math/*.json", "data_files/math/*.jsonl"]},
    include_package_data=True,
    install_requires=[
        # jax.lax.cummin/cumsum with reverse=, jax.shard_map, jax.make_mesh.
        "jax>=0.6.0",
        # Flax NNX with nnx.Param metadata (logical axes) and nnx.jit/split/merge.
        "flax>=0.11.0,<0.13",
        "optax>=0.2.4",
        # ocp.CheckpointManager with atomic (tmp-dir + rename) saves.
        "orbax-checkpoint>=0.11.0,<0.13",
        # Tokenizers and the HF checkpoint format (config.json + safetensors).
        "transformers>=4.48",
        "tokenizers>=0.21",
        "safetensors>=0.4.5",
        "chex>=0.1.88",
        "ml_collections>=1.0.0",
        "numpy>=1.26",
        # The verifier: math-verify parses LaTeX answers into sympy with timeouts;
        # a hand-written grader is the usual source of silent reward bugs.
        "math-verify[antlr4_13_2]>=0.7.0",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        # TensorBoard event files without pulling in TensorFlow.
        "tensorboardX>=2.6",
    ],
    extras_require={
        # Hugging Face datasets ids and parquet files as data.train_path / data.eval_paths.
        "hf": _HF,
        # Weights & Biases tracking (logging.wandb_project); a resumed run continues its W&B run.
        "wandb": ["wandb>=0.17"],
        "dev": [
            *_HF,  # the tests of those readers run too
            "pytest>=8.0",
            # The suite runs in two processes (pytest.ini): 11 min instead of 14 on 2 cores.
            "pytest-xdist>=3.5",
            # The torch reference for logit/generate parity tests. 2.13.0 is the CPU
            # build on the project machines' disk; any other version pulls CUDA wheels.
            "torch==2.13.0",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
)
