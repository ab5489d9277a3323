"""The arithmetic miniature's learned PRM (PURE_SPEC §2, §7 in miniature).

    python -m experiments.train_prm --config configs/arith_prm.py --workdir runs/arith_prm

Starts from the warm-start policy (configs/arith_sft.py, cached) with a fresh
2-class head, on step-labelled data in TRL format generated from the built-in
task: correct / one-error / filler traces and responses sampled from the
warm-start policy, every step labelled by the oracle (purejax/tasks/arith_prm.py;
filler steps labelled good). Two stages as in the paper: the head only, then all
parameters. Train records come from train problems, held-out records from
held-out problems. Stages run in name order.

Expected on 2 shared CPU cores: see README (held-out step accuracy and wall time).
`builtin:arith_learned` (configs/arith_pure_learned_prm.py) trains this config
on first use and caches it under ~/.cache/purejax/arith_prm/.
"""

import ml_collections


def stage(trainable, lr, epochs, batch_size=32, warmup_ratio=0.05, weight_decay=0.0, grad_clip=1.0):
    return ml_collections.ConfigDict(
        dict(
            trainable=trainable,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            warmup_ratio=warmup_ratio,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
        )
    )


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    # "builtin:arith" = the warm-start policy (same tokenizer as the RL policy); init "random" = from scratch.
    c.model = ml_collections.ConfigDict(dict(path="builtin:arith", init="pretrained", dtype="float32"))
    c.data = ml_collections.ConfigDict(
        dict(
            format="builtin:arith",
            train_path="",
            eval_path="",
            layout="policy",  # labels on exactly the tokens PRMScorer reads at RL time
            step_token="\n",
            separator="\n\n",
            max_prompt_len=64,
            max_response_len=128,
            drop_invalid=True,  # sampled responses whose steps do not round-trip are skipped
            neutral_is_positive=False,
            arith=ml_collections.ConfigDict(
                dict(
                    train_traces=3000,
                    eval_traces=256,
                    mix=ml_collections.ConfigDict(dict(correct=0.4, error=0.4, filler=0.2)),
                    policy_train=1024,
                    policy_eval=256,
                    temperature=1.0,
                    max_new_tokens=64,
                    filler_label=True,
                )
            ),
        )
    )
    c.stages = ml_collections.ConfigDict(
        dict(stage1_head=stage("head", lr=3e-3, epochs=0.5), stage2_all=stage("all", lr=1e-3, epochs=6.0))
    )
    c.eval = ml_collections.ConfigDict(dict(batch_size=128))
    c.cache_dir = ""  # "" -> $PUREJAX_CACHE or ~/.cache/purejax (builtin:arith_learned only)
    c.lock()
    return c
