"""Plan a run's memory, or its time per RL step, on a device mesh without the hardware or the weights.

    python -m experiments.plan --config configs/qwen25_math_7b_prm_vr.py --mesh data=1,fsdp=8,tensor=1
    python -m experiments.plan --config configs/arith_pure.py --mesh fsdp=8 --config.policy.arch=tiny
    python -m experiments.plan --config configs/qwen25_math_7b_prm_vr.py --mesh fsdp=8 --time \
        --mean-response-len 1024 --max-response-len 7168

Lowers and compiles the train step, the PRM's scoring forward and the sampler from abstract
shapes on simulated CPU devices (this script sets XLA_FLAGS to the mesh size before jax is
imported), then prints the per-device memory of params, optimizer state, activations and the
KV cache, whether it fits an 80 GB H100 and a 95 GB TPU v5p chip, and, as its last line, the
plan as one JSON object (`bytes_per_device`, the breakdown, `fits_h100_80gb`, `fits_tpu_v5p_95gb`).
Compiling a 7B step on CPU takes minutes and several GB of host memory.

With --time it prints the time plan instead (purejax.timeplan): per program of a step (prefill,
one decode step at a few cache fills, PRM scoring, the train step) the per-device FLOPs, HBM
bytes and collective bytes by kind, and a roofline time per RL step on 8 x A100-80GB, 8 x
H100-80GB and a TPU v5p-8; its last line is one JSON object with, per target, `step_s` and the
per-program times, plus `decode_step_collective_bytes` and `decode_weight_gather_bytes`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


def _mesh(text: str) -> tuple[int, int, int]:
    from purejax.sharding import parse_mesh  # imports jax, which only reads XLA_FLAGS on first use

    try:
        return parse_mesh(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--{error}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
    parser.add_argument("--mesh", type=_mesh, required=True, help="e.g. data=1,fsdp=8,tensor=1")
    parser.add_argument("--time", action="store_true", help="print the time plan instead of the memory plan")
    parser.add_argument(
        "--mean-response-len",
        type=int,
        default=None,
        help="mean response tokens for --time (default: purejax.timeplan.MEAN_RESPONSE_LEN, 1024)",
    )
    parser.add_argument(
        "--max-response-len",
        type=int,
        default=None,
        help="maximum response tokens for --time (default 7168, the paper's; clipped to rollout.max_new_tokens)",
    )
    parser.add_argument(
        "--decode-fills",
        default="0,0.5,1",
        help="cache fills at which --time compiles a decode step, fractions of max_new_tokens",
    )
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognised argument {item!r}; overrides look like --config.ppo.remat=True")
        overrides.append(item[len("--") :])

    devices = math.prod(args.mesh)
    # Simulated devices: the count is fixed when jax initialises, so set it first.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    from purejax import config as config_lib

    try:
        config = config_lib.load(args.config, overrides)
    except config_lib.ConfigError as error:
        sys.exit(f"error: {error}")
    import jax

    from purejax import plan as plan_lib

    if jax.device_count() < devices:
        sys.exit(
            f"error: --mesh needs {devices} devices but jax sees {jax.device_count()}; unset XLA_FLAGS "
            "so this script can simulate them."
        )
    try:
        if args.time:
            from purejax import timeplan

            fills = tuple(float(f) for f in args.decode_fills.split(",") if f.strip())
            result = timeplan.plan(
                config,
                args.mesh,
                mean_response_len=args.mean_response_len or timeplan.MEAN_RESPONSE_LEN,
                max_response_len=args.max_response_len or timeplan.MAX_RESPONSE_LEN,
                fills=fills,
            )
            print(timeplan.table(result))
        else:
            result = plan_lib.plan(config, args.mesh)
            print(plan_lib.table(result))
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
