"""The paper's PRM (PURE_SPEC §7): Qwen2.5-Math-7B trained on PRM800K, head first, then everything.

    python -m experiments.train_prm --config configs/qwen25_math_prm_two_stage.py --workdir runs/prm7b \
        --config.model.path=/data/Qwen2.5-Math-7B \
        --config.data.train_path=/data/prm800k/phase2_train.jsonl \
        --config.data.eval_path=/data/prm800k/phase2_test.jsonl

Needs local copies (nothing downloads at run time): the base model
(`hf download Qwen/Qwen2.5-Math-7B --local-dir /data/Qwen2.5-Math-7B`)
and OpenAI's PRM800K (github.com/openai/prm800k, prm800k/data/*.jsonl via
git-lfs), converted on load with TRL's rules (purejax.prm_data.prm800k_to_trl:
rating 1 is a good step, -1 and neutral 0 bad; the paper's "369k" matches TRL's
trl-lib/prm800k train split). A missing path fails with what to download and
where to put it.

Stage 1 trains the classification head only (lr 1e-4, 3 epochs), stage 2 all
parameters (lr 1e-6, 1 epoch), AdamW with grad clip 1.0. Layout 'trl': every
step tokenised on its own and followed by "\\n", labelled there, as TRL's
PRMTrainer does. Not runnable on a CPU in reasonable time: 369k records x 4
epochs of a 7B model is a multi-GPU job; this config fixes its hyperparameters.
The batch size is per step (the paper's global batch size is not given in the
spec; 64 is an assumption).
"""

import ml_collections

from configs.arith_prm import stage


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = ml_collections.ConfigDict(
        dict(path="/data/Qwen2.5-Math-7B", init="pretrained", dtype="bfloat16")
    )
    c.data = ml_collections.ConfigDict(
        dict(
            format="prm800k",
            train_path="/data/prm800k/phase2_train.jsonl",
            eval_path="/data/prm800k/phase2_test.jsonl",
            layout="trl",
            step_token="\n",
            separator="\n\n",
            max_prompt_len=1024,
            max_response_len=2048,
            drop_invalid=True,  # over-long records are skipped and counted, as TRL truncates them
            neutral_is_positive=False,
        )
    )
    c.stages = ml_collections.ConfigDict(
        dict(
            stage1_head=stage("head", lr=1e-4, epochs=3.0, batch_size=64, warmup_ratio=0.0),
            stage2_all=stage("all", lr=1e-6, epochs=1.0, batch_size=64, warmup_ratio=0.0),
        )
    )
    c.eval = ml_collections.ConfigDict(dict(batch_size=16))
    c.cache_dir = ""
    c.lock()
    return c
