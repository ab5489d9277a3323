"""Score a checkpoint as the paper does: greedy pass@1 on the five benchmarks, optionally Best-of-N with a PRM.

    python -m experiments.evaluate --checkpoint Qwen/Qwen2.5-Math-7B --out results/base.json
    python -m experiments.evaluate --checkpoint DIR --prm jinachris/PURE-PRM-7B --n 8 \\
        --benchmarks math500,amc23 --limit 100
    python -m experiments.evaluate --checkpoint DIR --data gsm8k=openai/gsm8k:main:test \\
        --data mine=problems.jsonl --question_key problem --chat_template

--checkpoint is a local HF directory (config.json, safetensors, tokenizer files;
--tokenizer when the tokenizer lives elsewhere) or a Hub id from the local HF cache.
--data NAME=SOURCE (repeatable) adds any dataset: a .jsonl, .json or .parquet file or an
HF dataset id ORG/NAME[:CONFIG][:SPLIT] (pip install 'purejax[hf]'), with the question and
answer columns found or given (--question_key, --answer_key); with --data only those sets
are scored unless --benchmarks is given too. Greedy decoding, 3000 new
tokens, the Qwen2.5-Math chat template (--chat_template: the tokenizer's own, with the
paper's system prompt), no code execution, math-verify. With
--prm, N responses per problem (temperature 1.0) are reranked by the PRM's
step rewards aggregated by min / soft-min sum (T = 0.1) / last step / sum;
pass@N, majority vote and the mean sample accuracy are reported alongside.
Expected for Qwen2.5-Math-7B (PURE_SPEC §8.1): ~39.5 average greedy pass@1.
Prints one table (accuracies in %) and writes --out as JSON (with every response).
"""

from __future__ import annotations

import argparse
import sys

from purejax.data import BENCHMARKS, DataError


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="local HF checkpoint directory of the policy")
    parser.add_argument("--tokenizer", default="", help="tokenizer directory (default: --checkpoint)")
    parser.add_argument("--prm", default="", help="local HF PRM directory (token classifier) for Best-of-N")
    parser.add_argument(
        "--benchmarks",
        default=None,
        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all five, or none with --data)",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="another evaluation set: a .jsonl/.json/.parquet file or an HF dataset id ORG/NAME[:CONFIG][:SPLIT]",
    )
    parser.add_argument("--question_key", default="", help="question column of --data sets (default: found)")
    parser.add_argument("--answer_key", default="", help="answer column of --data sets (default: found)")
    parser.add_argument(
        "--chat_template", action="store_true", help="format prompts with the tokenizer's own chat template"
    )
    parser.add_argument("--limit", type=int, default=0, help="first N problems per benchmark (0: all)")
    parser.add_argument(
        "--n", type=int, default=None, help="Best-of-N samples per problem (default 8 with --prm)"
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="Best-of-N sampling temperature")
    parser.add_argument("--max_new_tokens", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=64, help="sequences per generation batch")
    parser.add_argument("--prm_batch_size", type=int, default=0, help="rows per PRM pass (0: --batch_size)")
    parser.add_argument("--soft_min_temperature", type=float, default=0.1)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="JSON file for the report (written atomically)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--mesh",
        default="",
        help="shard the policy and PRM over a device mesh, e.g. data=1,fsdp=4,tensor=2 (default: "
        "one device); on several hosts run the same command on each (jax.distributed starts from "
        "the environment)",
    )
    args = parser.parse_args(argv)
    if args.benchmarks is None:
        args.benchmarks = "" if args.data else ",".join(BENCHMARKS)
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown or not (names or args.data):
        parser.error(f"--benchmarks: unknown {unknown or '(empty)'}; choose from {','.join(BENCHMARKS)}")
    args.benchmarks = names
    sets = {}
    for item in args.data:
        name, _, source = item.partition("=")
        name, source = name.strip(), source.strip()
        if not name or not source or "/" in name:
            parser.error(f"--data {item!r}: expected NAME=SOURCE, e.g. gsm8k=openai/gsm8k:main:test (NAME without '/')")
        if name in sets or name in names:
            parser.error(f"--data: the name {name!r} is used twice; every evaluation set needs its own name")
        sets[name] = source
    args.data = sets
    if args.mesh:
        from purejax.sharding import parse_mesh

        try:
            args.mesh = parse_mesh(args.mesh)
        except ValueError as error:
            parser.error(f"--{error}")
    args.n = (8 if args.prm else 0) if args.n is None else args.n
    for flag in ("limit", "n", "prm_batch_size"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag} must be >= 0")
    for flag in ("max_new_tokens", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1")
    if args.prm_batch_size and args.batch_size % args.prm_batch_size:
        parser.error(f"--prm_batch_size={args.prm_batch_size} must divide --batch_size={args.batch_size}")
    if args.prm and args.n < 1:
        parser.error("--prm needs --n >= 1 (Best-of-N samples per problem)")
    return args


def main(argv=None) -> dict:
    args = parse(sys.argv[1:] if argv is None else argv)
    # Heavy imports after argument checks: a typo fails before JAX starts.
    import jax
    import jax.numpy as jnp
    from transformers import AutoTokenizer

    from purejax import data, evaluation, xla_cache
    from purejax.model_paths import require_checkpoint_dir
    from purejax.models import load_pretrained

    try:
        # Hub ids resolve to their cached snapshot here, once.
        args.checkpoint = require_checkpoint_dir(args.checkpoint, "checkpoint", "the policy checkpoint")
        if args.prm:
            args.prm = require_checkpoint_dir(args.prm, "prm", "the PRM checkpoint")
        benchmarks = {name: data.load_benchmark(name) for name in args.benchmarks}
        for name, source in args.data.items():
            benchmarks[name] = data.load_eval_set(name, source, args.question_key, args.answer_key)
    except (FileNotFoundError, DataError) as error:
        sys.exit(f"error: {str(error).replace('--config.', '--').replace('config.', '--')}")
    if args.limit:
        benchmarks = {name: prompts[: args.limit] for name, prompts in benchmarks.items()}
    partitioner = None
    if args.mesh:
        from purejax import config as config_lib
        from purejax import distributed, sharding

        distributed.initialize(config_lib.defaults())  # a no-op unless launched multi-process
        try:
            partitioner = sharding.Partitioner(sharding.make_mesh(*args.mesh))
        except ValueError as error:
            sys.exit(f"error: --mesh: {error}")
    xla_cache.enable()
    dtype = jnp.dtype(args.dtype)
    model = load_pretrained(args.checkpoint, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.checkpoint)
    prm = load_pretrained(args.prm, dtype=dtype) if args.prm else None
    try:
        template = data.chat_template_prompt(tokenizer) if args.chat_template else data.DEFAULT_PROMPT_TEMPLATE
    except DataError as error:
        sys.exit(f"error: --chat_template: {error}")
    report = evaluation.evaluate(
        model,
        tokenizer,
        benchmarks,
        template=template,
        prm=prm,
        prm_batch_size=args.prm_batch_size,
        n=args.n,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        soft_min_temperature=args.soft_min_temperature,
        show_progress=not args.quiet,
        partitioner=partitioner,
    )
    report["settings"].update(
        checkpoint=args.checkpoint, prm=args.prm or None, dtype=args.dtype, limit=args.limit
    )
    if jax.process_index() != 0:  # multi-host: one process prints and writes
        return report
    print(evaluation.format_table(report))
    if report["verify_errors"]:
        print(f"note: {report['verify_errors']} responses could not be verified and scored 0")
    if args.out:
        evaluation.write_report(report, args.out)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
