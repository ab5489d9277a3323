"""The arithmetic miniature's learned PRM (PURE_SPEC §2, §7 in miniature).

    python -m experiments.train_prm --config configs/arith_prm.py --workdir runs/arith_prm

The config lives in the package (purejax/tasks/arith_prm_config.py), so
`builtin:arith_learned` works from any install; this file is its command-line name.
"""

from purejax.tasks.arith_prm_config import get_config, stage  # noqa: F401
