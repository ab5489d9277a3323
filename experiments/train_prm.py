"""Train a PRM (a token-classification Decoder) on step-labelled data.

    python -m experiments.train_prm --config configs/arith_prm.py --workdir runs/arith_prm [--config.key=value ...]

Data: TRL stepwise-supervision JSONL (prompt, completions, labels), OpenAI
PRM800K JSONL, or the arithmetic miniature's generated data. Writes WORKDIR/prm
(HF format: config.json, model.safetensors, tokenizer, prm_training.json), which
`purejax.models.load_pretrained`, transformers' AutoModelForTokenClassification
and `--config.prm.path=WORKDIR/prm` of experiments/train.py load. Prints the
held-out step metrics; for the arithmetic miniature also how the learned and the
scripted PRM score filler steps and answers with no work. The last line is one
JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time

from purejax import cli


def main(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
    parser.add_argument("--workdir", required=True, help="the PRM is written to WORKDIR/prm")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, overrides = cli.parse(
        parser, sys.argv[1:] if argv is None else argv, "--config.stages.stage1_head.lr=1e-4"
    )
    from purejax import prm_training, xla_cache
    from purejax.tasks import arith_prm

    try:
        config = arith_prm.load_config(args.config, overrides)
    except ValueError as error:
        sys.exit(f"error: {error}")
    xla_cache.enable()
    out = os.path.join(args.workdir, "prm")
    start = time.perf_counter()
    model_path, data = arith_prm.resolve(config)  # the miniature's names; (None, None) otherwise
    metrics = prm_training.train(config, out, progress=not args.quiet, model_path=model_path, data=data)
    wall = time.perf_counter() - start
    print(f"PRM written to {out} ({wall:.1f} s; data {metrics['data_seconds']:.1f} s)")
    print(
        f"{metrics['train_records']} train / {metrics['eval_records']} held-out records, "
        f"{metrics['dropped_records']} dropped; {metrics['train_good_share']:.1%} of train steps good"
    )
    print("held-out before training:")
    print(prm_training.format_metrics(metrics["heldout_before"]))
    for name, m in metrics["heldout_by_stage"].items():
        print(f"held-out after {name} ({m['steps_trained']} steps):")
        print(prm_training.format_metrics(m))
    summary = dict(
        path=out,
        wall_seconds=round(wall, 1),
        **{k: metrics["heldout"][k] for k in ("step_accuracy", "recall_good", "recall_bad", "process_f1")},
    )
    if config.data.format == arith_prm.FORMAT:
        from purejax.tasks import arith, warmstart

        spec = warmstart.spec_from_config(warmstart.load_sft_config(warmstart.SFT_CONFIG))
        probes = arith_prm.probe_scores(out, arith.make_problems("heldout", 128, seed=1, spec=spec))
        print(
            "probe (128 held-out problems)   probed step: learned  scripted | worst step: learned  scripted"
        )
        for name, p in probes.items():
            print(
                f"  {name:<28} {p['learned_probed']:+.3f}   {p['scripted_probed']:+.3f}  |"
                f"          {p['learned_min']:+.3f}   {p['scripted_min']:+.3f}"
            )
        summary["probes"] = probes
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
