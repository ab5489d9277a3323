"""Device mesh and logical-axis sharding: FSDP and tensor parallelism for the Decoder, its
optimizer state, rollout batches and the KV cache.

    partitioner = purejax.sharding.from_config(config)            # None on one device
    state = jax.device_put(state, partitioner.tree(state))
    step = make_train_step(config, graphdef, optimizer, partitioner=partitioner,
                           state_sharding=partitioner.tree(state))

The mesh has three axes (t5x / MaxText names):
  data    pure data parallelism: parameters replicated, the batch split;
  fsdp    the batch split AND every parameter's `embed` dimension split (ZeRO-3 style: XLA
          all-gathers a layer's weights where it is used and reduce-scatters its gradients);
  tensor  Megatron tensor parallelism: heads, MLP width and vocabulary split.

Every Decoder parameter carries logical axis names in its `out_sharding` metadata
(purejax.models.decoder); `config.mesh.rules` maps each logical name to a mesh axis, a tuple
of mesh axes, or None (replicated). Optimizer moments are nnx.Param copies of the parameters,
so they carry the same names and get the same sharding; optimizer scalars are replicated.
A dimension whose size the mesh axes do not divide (e.g. 4 KV heads on tensor = 8) stays
replicated rather than padded, and each mesh axis is used at most once per array.

Activations are constrained at a few named points only (`constrain`): the residual stream
and the logits in the Decoder, the KV cache in the sampler. `constrain` is a no-op unless
called while tracing under `Partitioner.active()`, so unsharded code is unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or tuple of axes, or None). Parameters: `embed` over fsdp (FSDP),
# heads / MLP width / vocabulary over tensor (Megatron). Activations: `batch` over data and fsdp.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("labels", None),
)

# Logical names of the activations constrained by `constrain` and of the KV cache.
RESIDUAL_AXES = ("batch", "length", "act_embed")
LOGITS_AXES = ("batch", "length", "vocab")
CACHE_K_AXES = ("batch", "kv_heads", "head_dim", "length")  # k [B, K, H, S]
CACHE_V_AXES = ("batch", "kv_heads", "length", "head_dim")  # v [B, K, S, H]


def parse_mesh(text: str) -> tuple[int, int, int]:
    """'data=1,fsdp=8,tensor=1' (any subset, the others 1) -> (data, fsdp, tensor), or ValueError."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key.strip() not in sizes or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"mesh {text!r}: expected sizes >= 1 such as data=1,fsdp=8,tensor=1.")
        sizes[key.strip()] = int(value)
    return sizes["data"], sizes["fsdp"], sizes["tensor"]


def mesh_shape(data: int, fsdp: int, tensor: int, num_devices: int) -> tuple[int, int, int]:
    """Resolves one -1 ("the rest of the devices") and checks the product equals `num_devices`."""
    sizes = {"data": int(data), "fsdp": int(fsdp), "tensor": int(tensor)}
    rest = [name for name, size in sizes.items() if size == -1]
    bad = [name for name, size in sizes.items() if size == 0 or size < -1]
    if bad:
        raise ValueError(
            f"config.mesh.{bad[0]}={sizes[bad[0]]}: mesh sizes must be >= 1, or -1 for the rest."
        )
    if len(rest) > 1:
        raise ValueError(
            f"config.mesh: only one of data/fsdp/tensor may be -1 (the rest of the devices), got {rest}."
        )
    known = math.prod(size for size in sizes.values() if size != -1)
    if rest:
        if num_devices % known:
            raise ValueError(
                f"config.mesh.{rest[0]}=-1: the other axes use {known} devices, which does not divide the "
                f"{num_devices} devices; choose sizes whose product divides {num_devices}."
            )
        sizes[rest[0]] = num_devices // known
    if math.prod(sizes.values()) != num_devices:
        shape = " x ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(
            f"config.mesh: {shape} = {math.prod(sizes.values())} devices, but {num_devices} are available; "
            f"set config.mesh.data/fsdp/tensor so their product is {num_devices} (use -1 on one axis for "
            "the rest)."
        )
    return sizes["data"], sizes["fsdp"], sizes["tensor"]


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh over `devices` (default: all, across every process).

    Axes are Auto (GSPMD): shardings come from jit in/out shardings and `constrain`, and
    XLA inserts the collectives; jax.make_mesh orders devices for the physical topology.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(data, fsdp, tensor, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def check_rules(rules) -> tuple:
    """Rules as a hashable tuple of (logical_name, mesh axis | tuple of axes | None) pairs."""
    out = []
    for i, pair in enumerate(rules):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError(
                f"config.mesh.rules[{i}]={pair!r}: each rule is a (logical_name, mesh_axis) pair, "
                f"e.g. ('embed', 'fsdp'); mesh_axis is one of {MESH_AXES}, a tuple of them, or None."
            )
        name, target = pair
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        for axis in axes:
            if axis not in MESH_AXES:
                raise ValueError(
                    f"config.mesh.rules[{i}]: logical axis {name!r} maps to unknown mesh axis {axis!r}; "
                    f"allowed: {', '.join(MESH_AXES)}, a tuple of them, or None."
                )
        out.append((name, target if target is None or isinstance(target, str) else tuple(target)))
    return tuple(out)


_ACTIVE = threading.local()


@dataclasses.dataclass(frozen=True)
class Partitioner:
    """A mesh plus logical-axis rules; hashable, so it can be a static jit argument."""

    mesh: Mesh
    rules: tuple = DEFAULT_RULES

    def __post_init__(self):
        object.__setattr__(self, "rules", check_rules(self.rules))

    # ------------------------------------------------------------ specs and shardings

    def spec(self, logical_axes: Sequence[str | None], shape: Sequence[int] | None = None) -> PartitionSpec:
        """PartitionSpec of an array with these logical axes; dims the mesh does not divide stay whole."""
        table = dict(self.rules)
        used: set[str] = set()
        out = []
        for i, name in enumerate(logical_axes):
            target = table.get(name) if name is not None else None
            axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
            axes = tuple(a for a in axes if a not in used and self.mesh.shape[a] > 1)
            size = math.prod(self.mesh.shape[a] for a in axes)
            if shape is not None and shape[i] % size:
                axes = ()
            used.update(axes)
            out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
        while out and out[-1] is None:
            out.pop()
        return PartitionSpec(*out)

    def sharding(self, logical_axes, shape=None) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(logical_axes, shape))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def tree(self, tree: Any) -> Any:
        """NamedShardings for a pytree of nnx Variables and arrays (params, optimizer state,
        a whole TrainState): Variables by their logical axes, other arrays replicated. The
        result has the tree's structure, so it can be a jit in/out sharding or device_put target."""

        def leaf(x):
            if isinstance(x, nnx.Variable):
                axes = x.get_metadata().get("out_sharding")
                value = x.get_value()
                if axes and len(axes) == len(value.shape):
                    return x.replace(self.sharding(axes, value.shape))
                return x.replace(self.replicated())
            return self.replicated()

        return jax.tree.map(leaf, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))

    def batch(self, num_rows: int | None = None) -> NamedSharding:
        """Leading (row) axis over data x fsdp, the rest replicated: a pytree prefix for a whole
        RolloutBatch or a prompt batch. `num_rows` is checked against the data x fsdp size."""
        spec = self.spec(("batch",))
        if num_rows is not None:
            self.check_rows([("a batch", num_rows)])
        return NamedSharding(self.mesh, spec)

    def check_rows(self, calls: Sequence[tuple[str, int]]) -> None:
        """One ValueError naming the setting if a call's rows cannot be split over data x fsdp.

        calls: (what sets the row count, e.g. "config.rollout.sample_batch", rows per call)."""
        ways = math.prod(self.mesh.shape[a] for a in _axes_of(self.spec(("batch",))))
        for name, rows in calls:
            if rows % ways:
                raise ValueError(
                    f"{name} = {rows} rows cannot be split over mesh data x fsdp = {ways} devices; "
                    f"make it a multiple of {ways}, or change config.mesh."
                )

    def kv_cache(self, cache) -> Any:
        """Shardings of a Decoder KV cache (tuple of LayerCache): rows over data x fsdp, KV heads over tensor."""
        return jax.tree.map(
            lambda c: type(c)(self.sharding(CACHE_K_AXES, c.k.shape), self.sharding(CACHE_V_AXES, c.v.shape)),
            cache,
            is_leaf=lambda c: hasattr(c, "_fields") and set(c._fields) == {"k", "v"},
        )

    def abstract(self, tree: Any) -> Any:
        """ShapeDtypeStructs carrying this mesh's shardings (restore targets; lowering without
        allocation). Accepts arrays or ShapeDtypeStructs, with or without nnx Variables."""
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            tree,
            self.tree(tree),
        )

    def seed_stacked(self, shardings: Any) -> Any:
        """The shardings of the same tree with a leading (replicated) seed axis on every array,
        for the vmapped multi-seed trainer (config.num_seeds): seed s's slice is sharded as before."""
        return jax.tree.map(
            lambda s: NamedSharding(self.mesh, PartitionSpec(None, *s.spec)),
            shardings,
            is_leaf=lambda s: isinstance(s, NamedSharding),
        )

    # ------------------------------------------------------------ host <-> global arrays

    def place(self, tree: Any) -> Any:
        """A tree of nnx Variables (a model's state, a TrainState) sharded by its logical axes."""
        return self.put(tree, self.tree(tree))

    def put(self, tree: Any, shardings: Any) -> Any:
        """Global arrays from host values every process holds in full (numpy or local jax arrays).

        Each process copies only the slices its own devices hold, so the same call serves one
        host and a multi-host pod (where jax.device_put of host data onto devices of other
        processes is not possible)."""

        def one(x, s):
            if isinstance(x, jax.Array) and x.sharding == s:
                return x
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, s, lambda index: host[index])

        return jax.tree.map(one, tree, shardings)

    # ------------------------------------------------------------ tracing under the mesh

    @contextlib.contextmanager
    def active(self):
        """While tracing inside this context, `constrain` applies this partitioner's shardings."""
        previous = getattr(_ACTIVE, "partitioner", None)
        _ACTIVE.partitioner = self
        try:
            yield self
        finally:
            _ACTIVE.partitioner = previous

    def jit(self, fn, **jit_kwargs):
        """jax.jit(fn, **jit_kwargs) whose tracing runs under `active()`."""

        def traced_under_mesh(*args, **kwargs):
            with self.active():
                return fn(*args, **kwargs)

        return jax.jit(traced_under_mesh, **jit_kwargs)


def _axes_of(spec: PartitionSpec) -> tuple[str, ...]:
    out = []
    for entry in spec:
        out.extend((entry,) if isinstance(entry, str) else tuple(entry or ()))
    return tuple(out)


def active() -> Partitioner | None:
    """The partitioner whose `active()` context is open, if any."""
    return getattr(_ACTIVE, "partitioner", None)


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """with_sharding_constraint by logical axis names; the identity without an active partitioner."""
    partitioner = active()
    if partitioner is None:
        return x
    return jax.lax.with_sharding_constraint(x, partitioner.sharding(logical_axes, x.shape))


def from_config(config, devices: Sequence | None = None) -> Partitioner | None:
    """The run's Partitioner from `config.mesh`, or None when there is only one device."""
    devices = list(jax.devices() if devices is None else devices)
    m = config.mesh
    if len(devices) == 1 and all(int(v) in (1, -1) for v in (m.data, m.fsdp, m.tensor)):
        return None
    return Partitioner(make_mesh(m.data, m.fsdp, m.tensor, devices), tuple(map(tuple, m.rules)))


def for_rollout(partitioner: Partitioner | None, tensor: int) -> Partitioner | None:
    """The decode layout's partitioner (config.rollout.mesh_tensor = `tensor`), or None to sample
    in the training layout (`tensor` 0, or one device).

    The same devices as `partitioner`, as a (devices / tensor, 1, tensor) mesh under the same
    rules: no fsdp axis, so parameters are replicated over the data groups and split over
    `tensor` by heads, MLP width and vocabulary inside a group; rows and the KV cache split
    over the groups. Decoding then gathers no weights, only tensor-parallel activations.
    """
    if partitioner is None or not int(tensor):
        return None
    devices = list(partitioner.mesh.devices.flat)
    if len(devices) % int(tensor):
        raise ValueError(
            f"config.rollout.mesh_tensor={tensor} must divide the {len(devices)} devices of config.mesh "
            "(0: sample in the training layout)."
        )
    return Partitioner(make_mesh(-1, 1, int(tensor), devices), partitioner.rules)


def fetch(tree: Any) -> Any:
    """numpy copies of (possibly multi-host) global arrays, whole on every process."""

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
            return np.asarray(x)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def describe(partitioner: Partitioner | None) -> str:
    if partitioner is None:
        return "one device, unsharded"
    shape = ", ".join(f"{k}={v}" for k, v in partitioner.mesh.shape.items())
    return f"mesh ({shape}) over {partitioner.mesh.devices.size} devices"


def per_device_bytes(tree: Any) -> int:
    """Bytes of the largest per-device shard of a tree of (abstract) arrays with shardings, summed."""
    total = 0
    for x in jax.tree.leaves(tree):
        sharding = getattr(x, "sharding", None)
        shape = sharding.shard_shape(x.shape) if sharding is not None else x.shape
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total
