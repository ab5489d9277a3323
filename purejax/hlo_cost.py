"""Costs of a compiled XLA program read from its optimized HLO: FLOPs and HBM bytes with loops
counted as often as they run, collective bytes by kind, and the all-gathers of parameters.

    cost = program_cost(jitted.lower(*abstract_args).compile(), weight_params=range(n_weights))
    cost.flops, cost.bytes, cost.collectives["all-gather"], cost.weight_gather_bytes

XLA's `compiled.cost_analysis()` (HloCostAnalysis) counts a while loop's body ONCE, whatever
its trip count (a 10-step scan of a matmul reports one matmul), and a train step is nested
scans (epochs, minibatches, micro-batches, layers). So the counts here apply the same
HloCostAnalysis to each loop body on its own, as a module of its own (the body and the
computations it calls), and scale it by the loop's `known_trip_count`, which XLA writes into
every while op whose trip count it proved:

    full(C) = xla(C) + sum over loops w run by C of (trip(w) x full(body(w)) - xla(body(w)))

(xla(C) already holds each loop body once). A loop without a known trip count is counted
once and listed in `unknown_trip_loops`.

Collective bytes are the bytes of each collective's result shape (a tuple's elements summed;
async pairs counted at their `-done` op), times how often its computation runs. That is the
data each device receives for an all-gather, and the buffer size for an all-reduce (a ring
all-reduce moves ~2x that over the links; see `purejax.timeplan` for how it is timed).

All numbers are per device: the HLO of a jitted SPMD program is the per-device program.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np

# Kinds of collective, by HLO opcode (async forms map to the same kind).
COLLECTIVE_KINDS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")

_DTYPE_BYTES = {
    "pred": 1, "s4": 1, "u4": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
    "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4,
    "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
# "  %name = <shape> opcode(operands), attrs" (ROOT optional); the shape may be a tuple.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+([a-z][a-z0-9\-]*)\((.*)$")
_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s+\(.*\{\s*$")
_CALLED = re.compile(r"\b(?:calls|to_apply|body|condition|branch_computations)=\{?([^}\s]*(?:,\s*%[\w.\-]+)*)\}?")


@dataclasses.dataclass
class Instruction:
    name: str
    shape: str  # the result shape text, e.g. "bf16[8,128]{1,0}" or "(f32[2], s32[])"
    opcode: str
    operands: list[str]  # operand instruction names
    attrs: str  # the rest of the line


@dataclasses.dataclass
class Computation:
    name: str
    is_entry: bool
    lines: list[str]  # the computation's text, header and closing brace included
    instructions: list[Instruction]


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape text (a tuple's elements summed; layouts ignored)."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        if dtype not in _DTYPE_BYTES:
            continue  # e.g. token[]
        total += int(np.prod([int(d) for d in dims.split(",") if d], dtype=np.int64)) * _DTYPE_BYTES[dtype]
    return total


def _split_operands(text: str) -> tuple[list[str], str]:
    """'a, %b), attrs' -> (['a', 'b'], 'attrs'): operands up to the matching parenthesis."""
    depth, i = 1, 0
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    inner, rest = text[: i - 1], text[i:]
    names = re.findall(r"%([\w.\-]+)", inner)
    if not names:  # operands printed without '%'
        names = [t.strip().split(" ")[-1] for t in inner.split(",") if t.strip()]
    return names, rest


def parse_module(text: str) -> tuple[str, dict[str, Computation]]:
    """(header line, computations by name, in text order) of an HLO module's text."""
    header, computations, current = "", {}, None
    for line in text.splitlines():
        if line.startswith("HloModule"):
            header = line
            continue
        if current is None:
            match = _COMPUTATION.match(line)
            if match:
                current = Computation(match.group(2), bool(match.group(1)), [line], [])
            continue
        current.lines.append(line)
        if line.startswith("}"):
            computations[current.name] = current
            current = None
            continue
        match = _INSTRUCTION.match(line)
        if match:
            name, shape, opcode, rest = match.groups()
            operands, attrs = _split_operands(rest)
            current.instructions.append(Instruction(name, shape, opcode, operands, attrs))
    return header, computations


def _called(instruction: Instruction) -> list[str]:
    out = []
    for group in _CALLED.findall(instruction.attrs):
        out += re.findall(r"%?([\w.\-]+)", group)
    return out


def trip_count(instruction: Instruction) -> int | None:
    match = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', instruction.attrs)
    return int(match.group(1)) if match else None


def _while_parts(instruction: Instruction) -> tuple[str, str]:
    body = re.search(r"\bbody=%?([\w.\-]+)", instruction.attrs).group(1)
    cond = re.search(r"\bcondition=%?([\w.\-]+)", instruction.attrs).group(1)
    return body, cond


def _collective_kind(opcode: str) -> str | None:
    if opcode.endswith("-start"):
        return None  # counted at its -done
    base = opcode.removesuffix("-done")
    return base if base in COLLECTIVE_KINDS else None


def multiplicities(computations: dict[str, Computation]) -> tuple[dict[str, int], list[str]]:
    """How many times each computation runs per call of the entry (loops by their trip
    counts), and the while ops whose trip count XLA did not know (counted once)."""
    counts: dict[str, int] = {}
    unknown: list[str] = []
    entry = next(c for c in computations.values() if c.is_entry)

    def visit(name: str, times: int):
        if name not in computations:
            return
        counts[name] = counts.get(name, 0) + times
        for ins in computations[name].instructions:
            if ins.opcode == "while":
                trip = trip_count(ins)
                if trip is None:
                    unknown.append(ins.name)
                body, cond = _while_parts(ins)
                visit(body, times * (trip or 1))
                visit(cond, times * ((trip or 1) + 1))
            elif ins.opcode != "fusion":  # fusions hold no collectives or loops
                for callee in _called(ins):
                    visit(callee, times)

    visit(entry.name, 1)
    return counts, unknown


def collective_bytes(text: str) -> dict[str, int]:
    """Per-device bytes of each collective kind in one run of an HLO module (loops unrolled by
    their known trip counts): the sum of the collectives' result-shape bytes."""
    _, computations = parse_module(text)
    counts, _ = multiplicities(computations)
    out = {kind: 0 for kind in COLLECTIVE_KINDS}
    for name, times in counts.items():
        for ins in computations[name].instructions:
            kind = _collective_kind(ins.opcode)
            if kind:
                out[kind] += times * shape_bytes(ins.shape)
    return out


def weight_gather_bytes(text: str, weight_params: Iterable[int]) -> int:
    """Bytes of the all-gathers whose operands are computed from weights alone.

    Method: operand tracing in the entry computation (and the loop bodies it runs). Every
    instruction gets the set of entry parameters it depends on, through any chain of ops
    (copies, converts, bitcasts, fusions, tuples, loops: a loop's results depend on all of its
    inputs). An all-gather whose dependency set is non-empty and contains only `weight_params`
    (the entry parameter numbers holding the model's weights; jit with keep_unused=True keeps
    the arguments' flat order) gathers parameters. Inside a loop body, dependencies are tracked
    through the loop's carry tuple only coarsely (the whole carry), so a gather there counts
    only when the loop carries nothing but weights; the decode step has no loops.
    """
    _, computations = parse_module(text)
    weights = set(weight_params)
    entry = next(c for c in computations.values() if c.is_entry)
    total = 0

    def walk(comp: Computation, param_deps, times: int):
        nonlocal total
        deps: dict[str, frozenset] = {}
        for ins in comp.instructions:
            if ins.opcode == "parameter":
                deps[ins.name] = param_deps(_param_number(ins))
                continue
            d = frozenset().union(*(deps.get(o, frozenset()) for o in ins.operands))
            deps[ins.name] = d
            if _collective_kind(ins.opcode) == "all-gather" and d and d <= weights:
                total += times * shape_bytes(ins.shape)
            if ins.opcode == "while":
                body, _ = _while_parts(ins)
                if body in computations:
                    walk(computations[body], lambda _, d=d: d, times * (trip_count(ins) or 1))

    walk(entry, lambda number: frozenset({number}), 1)
    return total


def _param_number(ins: Instruction) -> int:
    """The N of "parameter(N)" (parsed as the instruction's one operand)."""
    return int(ins.operands[0])


def _reachable(computations: dict[str, Computation], root: str) -> list[str]:
    seen, stack = set(), [root]
    while stack:
        name = stack.pop()
        if name in seen or name not in computations:
            continue
        seen.add(name)
        for ins in computations[name].instructions:
            stack.extend(_called(ins))
    return [name for name in computations if name in seen]  # text order: callees first


def _module_text(header: str, computations: dict[str, Computation], root: str) -> str:
    """An HLO module whose entry is `root` and the computations it calls."""
    attrs = re.findall(r"\b(?:replica_count|num_partitions)=\d+", header)
    lines = [", ".join(["HloModule sub", *attrs]), ""]
    for name in _reachable(computations, root):
        comp = computations[name]
        first = re.sub(r"^ENTRY\s+", "", comp.lines[0])
        lines += (["ENTRY " + first] if name == root else [first]) + comp.lines[1:] + [""]
    # Metadata points into the whole module's stack-frame table, which is not printed.
    return _METADATA.sub("", "\n".join(lines))


_METADATA = re.compile(r", metadata=\{[^{}]*\}")


@dataclasses.dataclass(frozen=True)
class ProgramCost:
    """Per-device cost of one run of a compiled program."""

    flops: float  # loops counted by their trip counts
    bytes: float  # HBM bytes accessed (HloCostAnalysis' model), loops counted likewise
    collectives: dict  # kind -> bytes
    weight_gather_bytes: int  # all-gathers of weights (0 unless weight_params were given)
    xla_flops_once: float  # compiled.cost_analysis()['flops']: every loop body once
    unknown_trip_loops: tuple = ()

    @property
    def collective_total(self) -> int:
        return int(sum(self.collectives.values()))

    def to_json(self) -> dict:
        return {
            "flops": self.flops,
            "bytes": self.bytes,
            "collective_bytes": dict(self.collectives),
            "weight_gather_bytes": self.weight_gather_bytes,
            "xla_cost_analysis_flops_loop_bodies_once": self.xla_flops_once,
            "unknown_trip_loops": list(self.unknown_trip_loops),
        }


def _xla_cost(client, text: str) -> dict:
    from jax._src.lib import xla_client
    from jaxlib import _hlo

    return xla_client._xla.hlo_module_cost_analysis(client, _hlo.hlo_module_from_text(text))


def loop_cost(text: str, client, entry_cost: dict | None = None) -> tuple[float, float, list[str]]:
    """(flops, bytes accessed, loops of unknown trip count) of one run of the module `text`,
    every loop body counted trip-count times (module docstring)."""
    header, computations = parse_module(text)
    entry = next(c.name for c in computations.values() if c.is_entry)
    unknown: list[str] = []
    memo: dict[str, tuple[dict, tuple[float, float]]] = {}

    def xla(name):
        if name not in memo:
            cost = entry_cost if (name == entry and entry_cost is not None) else None
            cost = cost or _xla_cost(client, _module_text(header, computations, name))
            memo[name] = (cost, None)
        return memo[name][0]

    def loops(name, seen=None):
        """The while ops run by computation `name` itself (through calls, not loop bodies)."""
        seen = seen if seen is not None else set()
        if name in seen or name not in computations:
            return []
        seen.add(name)
        out = []
        for ins in computations[name].instructions:
            if ins.opcode == "while":
                out.append(ins)
            elif ins.opcode != "fusion":
                for callee in _called(ins):
                    out += loops(callee, seen)
        return out

    def full(name) -> tuple[float, float]:
        cost = xla(name)
        flops, bytes_ = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
        for ins in loops(name):
            trip = trip_count(ins)
            if trip is None:
                unknown.append(ins.name)
                continue
            body, _ = _while_parts(ins)
            body_once = xla(body)
            body_flops, body_bytes = full(body)
            flops += trip * body_flops - float(body_once.get("flops", 0.0))
            bytes_ += trip * body_bytes - float(body_once.get("bytes accessed", 0.0))
        return flops, bytes_

    flops, bytes_ = full(entry)
    return flops, bytes_, unknown


def program_cost(compiled, weight_params: Iterable[int] = ()) -> ProgramCost:
    """The per-device cost of one run of a jax `Compiled` (jitted(...).lower(...).compile())."""
    import jax

    text = compiled.as_text()
    entry_cost = compiled.cost_analysis()
    if isinstance(entry_cost, (list, tuple)):  # older jax: one dict per device program
        entry_cost = entry_cost[0]
    client = jax.devices()[0].client
    flops, bytes_, unknown = loop_cost(text, client, entry_cost)
    return ProgramCost(
        flops=flops,
        bytes=bytes_,
        collectives=collective_bytes(text),
        weight_gather_bytes=weight_gather_bytes(text, weight_params),
        xla_flops_once=float(entry_cost.get("flops", 0.0)),
        unknown_trip_loops=tuple(unknown),
    )

