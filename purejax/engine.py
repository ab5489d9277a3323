"""Continuous batching over a paged KV pool: `sampling.sample`'s outputs with a decode batch
that stays full while rows of very different lengths finish.

    out = sample_continuous(model, prompt_ids, prompt_mask, max_new_tokens=256, rng=key,
                            temperature=1.0, eos_token_id=eos, slots=48, page_size=64)
    out.tokens, out.mask, out.logprobs      # each [B, max_new_tokens], as `sampling.sample`

Why: `sampling.sample` decodes all B rows until the longest one ends, so with long-tailed
response lengths most of its row-steps decode padding after an EOS. Here a fixed number W of
decode slots run; when a slot's row ends (EOS or max_new_tokens) its row's tokens are already
in the [B, N] outputs, its pages go back to the pool and the slot takes the next pending
prompt. All of it is one jitted `lax.while_loop`: each iteration first admits pending prompts
into free slots (a one-row prefill each, inside the loop), then decodes one token for every
slot.

KV pool (`paged_kv`): per layer, `num_pages` pages of `page_size` positions, and per slot a
page table. A row's positions are packed: its real prompt tokens, then every fed-back token,
so a row holds at most ceil((P + tokens fed back) / page_size) pages: memory follows the
tokens written, not B x (P + N), and what a slot's query sees is one length. Attention reads
a slot's pages up to that length: `attention='auto'` takes the Pallas paged-attention kernel
of jax.experimental on GPU and TPU and the portable jnp form elsewhere (the one CPU runs).

Tail: once the queue has drained and at most W/2 rows are live, the live slots move to the
front and the loop goes on at width W/2, then W/4 (`tail_widths`). Only the slots' small
state moves: their pages stay where they are. A decode step's cost follows its width, so the
long tail of lengths, where few rows are still live, no longer pays for W slots. (Only when
the pool holds W/2 whole rows, as the default does: then no tail row can wait for a page.)

Pages are taken as rows grow. If a slot needs a page and none is free it waits (a starved
slot); while any slot starves no prompt is admitted, and if every live slot starves, the
live row with the largest index is evicted: its pages are freed and it is decoded again from
its prompt later. So any pool that holds one whole row finishes (`num_pages` defaults to
W whole rows: no eviction ever).

Randomness: `sample` draws token i of every row from `token_choice.uniforms(fold_in(rng, i),
B)`. The engine precomputes that [N, B, 2] table and gives row b's token i its entry,
whichever slot and iteration decode it, so the same key gives the same tokens as `sample`
(greedy and sampled) up to float rounding: the batched matmuls and the online softmax round
differently, which can flip a choice at a near-tie.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax import paged_kv, sampling, token_choice
from purejax.sampling import SampleOutput


class EngineStats(NamedTuple):
    decode_steps: jax.Array  # int32: loop iterations that decoded at least one live slot
    slot_steps: jax.Array  # int32: slots those iterations ran (their widths summed)
    useful_slot_steps: jax.Array  # int32: tokens kept from those iterations (live, not starved)
    prefills: jax.Array  # int32: prompts prefilled (an evicted row counts again)
    evictions: jax.Array  # int32: rows evicted for want of pages
    peak_pages: jax.Array  # int32: most pages held at once (of num_pages per layer)


class EngineOutput(NamedTuple):
    samples: SampleOutput
    stats: EngineStats


def sample_continuous(
    model,
    prompt_ids,
    prompt_mask,
    max_new_tokens: int,
    rng,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    *,
    slots: int = 64,
    page_size: int = 64,
    num_pages: int | None = None,
    attention: str = "auto",
    interpret: bool = False,
) -> SampleOutput:
    """`sampling.sample` by continuous batching; see `run` for the arguments."""
    return run(
        model, prompt_ids, prompt_mask, max_new_tokens, rng, temperature, top_k, top_p,
        eos_token_id, pad_token_id, slots=slots, page_size=page_size, num_pages=num_pages,
        attention=attention, interpret=interpret,
    ).samples  # fmt: skip


def run(
    model,
    prompt_ids,
    prompt_mask,
    max_new_tokens: int,
    rng,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    *,
    slots: int = 64,
    page_size: int = 64,
    num_pages: int | None = None,
    attention: str = "auto",
    interpret: bool = False,
) -> EngineOutput:
    """Samples max_new_tokens continuations of B prompts with W = min(slots, B) decode slots.

    Args (one device only; the others as in `sampling.sample`):
      slots: decode width W >= 1 (the decode batch).
      page_size: positions per KV page, >= 1.
      num_pages: pages in the pool per layer, at least the pages of one whole row,
        ceil((P + N - 1) / page_size); None: W whole rows.
      attention: paged attention, one of `paged_kv.IMPLS` ('auto': the Pallas kernel on GPU
        and TPU, plain jnp elsewhere).
      interpret: run a Pallas kernel in the interpreter (any backend; slow, for tests).
    Returns:
      EngineOutput(SampleOutput [B, N] fields as `sample` returns them, EngineStats).
    """
    eos = sampling._check_inputs(
        model, prompt_ids, prompt_mask, max_new_tokens, rng, temperature, top_k, top_p,
        eos_token_id, pad_token_id,
    )  # fmt: skip
    rows, prompt_len = np.shape(prompt_ids)
    slots, num_pages = _check_pool(rows, prompt_len, max_new_tokens, slots, page_size, num_pages)
    kv = paged_kv.PagedKV(paged_kv.resolve(attention), bool(interpret))
    graphdef, state = nnx.split(model)
    ids, mask = jnp.asarray(prompt_ids, jnp.int32), jnp.asarray(prompt_mask).astype(bool)
    traced, static = sampling._options(max_new_tokens, temperature, top_k, top_p, eos, pad_token_id)
    return _run_jit(
        graphdef, state, ids, mask, rng, *traced, **static,
        slots=slots, page_size=int(page_size), num_pages=num_pages, kv=kv,
    )  # fmt: skip


def pages_per_row(prompt_len: int, max_new_tokens: int, page_size: int) -> int:
    """Pages one row holds at most: its prompt and every fed-back token (the last is never)."""
    return -(-(prompt_len + max_new_tokens - 1) // page_size)


def _check_pool(rows, prompt_len, max_new_tokens, slots, page_size, num_pages) -> tuple[int, int]:
    """Validates the engine's own arguments; returns (W, num_pages)."""
    for name, value in (("slots", slots), ("page_size", page_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"sample_continuous: {name} must be an int >= 1, got {value!r}.")
    width = min(int(slots), rows)
    per_row = pages_per_row(prompt_len, max_new_tokens, int(page_size))
    if num_pages is None:
        return width, width * per_row
    if not isinstance(num_pages, (int, np.integer)) or isinstance(num_pages, bool) or num_pages < per_row:
        raise ValueError(
            f"sample_continuous: num_pages must be an int >= {per_row}, the pages of one row "
            f"({prompt_len} prompt positions + {max_new_tokens - 1} fed-back tokens in pages of "
            f"{page_size}), got {num_pages!r}."
        )
    return width, int(num_pages)


class _Slots(NamedTuple):
    live_w: jax.Array  # bool: the slot holds a row that has not ended
    row_w: jax.Array  # int32: its row
    t_w: jax.Array  # int32: index of its latest chosen token (fed back next)
    token_w: jax.Array  # int32: that token
    n_prompt_w: jax.Array  # int32: real prompt tokens (positions, RoPE's too, continue from there)
    pages_w: jax.Array  # int32: pages it holds, table_wj[:, :pages]
    table_wj: jax.Array  # int32 [W, J]: page of positions j*page .. (j+1)*page - 1


class _Carry(NamedTuple):
    pools: tuple  # per-layer paged_kv.Pool
    free_n: jax.Array  # bool [pages]: page is free
    slots: _Slots
    pending_b: jax.Array  # bool [B]: row waits for a slot
    starved: jax.Array  # bool: a slot waited for a page in the last decode step
    out: SampleOutput
    stats: EngineStats


_STATIC_ARGNAMES = tuple(a for a in sampling._STATIC_ARGNAMES if a != "partitioner") + (
    "slots",
    "page_size",
    "num_pages",
    "kv",
)


@jax.jit(static_argnames=_STATIC_ARGNAMES)
def _run_jit(
    graphdef, state, ids_bp, mask_bp, rng, temperature, top_p, *, max_new_tokens, greedy, top_k,
    use_top_p, eos, pad_token_id, slots, page_size, num_pages, kv,
):  # fmt: skip
    model = nnx.merge(graphdef, state)
    b, p = ids_bp.shape
    n, w = max_new_tokens, slots
    j_max = pages_per_row(p, n, page_size)
    prompt_pages = -(-p // page_size)
    # Admit a prompt only if its pages and its first decode page are free.
    admit_pages = min(-(-(p + 1) // page_size), j_max)
    if greedy:
        u_nb2 = jnp.zeros((n, b, 2), jnp.float32)
    else:  # token i of row b draws what `sample` draws for it (`_record`: fold_in(rng, i))
        u_nb2 = jax.vmap(lambda i: token_choice.uniforms(jax.random.fold_in(rng, i), b))(jnp.arange(n))
    eos_ids = jnp.asarray(eos, jnp.int32)

    def choose(logits_wv, row_w, t_w):
        """(token, log-prob, row ends with it) of token t of row `row` in each slot."""
        u_w2 = u_nb2[jnp.clip(t_w, 0, n - 1), row_w]
        token_w, logp_w = token_choice.choose_by_uniforms(
            logits_wv, u_w2, temperature, top_p, greedy=greedy, top_k=top_k, use_top_p=use_top_p
        )
        ends_w = t_w >= n - 1
        if eos:
            ends_w = ends_w | jnp.isin(token_w, eos_ids)
        return token_w, logp_w, ends_w

    def record(out, row_w, t_w, token_w, logp_w, keep_w):
        row_w = jnp.where(keep_w, row_w, b)  # out of range: dropped
        return SampleOutput(
            out.tokens.at[row_w, t_w].set(token_w, mode="drop"),
            out.mask.at[row_w, t_w].set(True, mode="drop"),
            out.logprobs.at[row_w, t_w].set(logp_w, mode="drop"),
        )

    def admit(c: _Carry) -> _Carry:
        """Prefills the lowest pending row into the lowest free slot and chooses its token 0."""
        s = c.slots
        row, slot = jnp.argmax(c.pending_b), jnp.argmax(~s.live_w)
        ids_1p, mask_1p = ids_bp[row][None], mask_bp[row][None]
        cache = model.init_cache(1, prompt_pages * page_size)
        logits_1v, cache = sampling._prompt_forward(model, ids_1p, mask_1p, cache)
        pages_j = jnp.nonzero(c.free_n, size=prompt_pages, fill_value=num_pages)[0]
        mask_s = jnp.pad(mask_1p[0], (0, prompt_pages * page_size - p))
        pools = tuple(
            kv.write_prompt(pool, layer.k[0], layer.v[0], mask_s, pages_j) for pool, layer in zip(c.pools, cache)
        )
        token, logp, ends = choose(logits_1v, row[None], jnp.zeros((1,), jnp.int32))
        ends = ends[0]
        # A row that ends at token 0 hands its pages straight back.
        free_n = c.free_n.at[pages_j].set(ends, mode="drop")
        slots_ = _Slots(
            live_w=s.live_w.at[slot].set(~ends),
            row_w=s.row_w.at[slot].set(row),
            t_w=s.t_w.at[slot].set(0),
            token_w=s.token_w.at[slot].set(token[0]),
            n_prompt_w=s.n_prompt_w.at[slot].set(mask_1p.sum(dtype=jnp.int32)),
            pages_w=s.pages_w.at[slot].set(jnp.where(ends, 0, prompt_pages)),
            table_wj=s.table_wj.at[slot, :prompt_pages].set(pages_j),
        )
        return c._replace(
            pools=pools,
            free_n=free_n,
            slots=slots_,
            pending_b=c.pending_b.at[row].set(False),
            out=record(c.out, row[None], 0, token, logp, True),
            stats=c.stats._replace(prefills=c.stats.prefills + 1),
        )

    def can_admit(c: _Carry):
        return (
            jnp.any(~c.slots.live_w) & jnp.any(c.pending_b) & (jnp.sum(c.free_n) >= admit_pages) & ~c.starved
        )

    def decode(c: _Carry) -> _Carry:
        """Feeds every live slot's latest token back and chooses its next one."""
        s = c.slots
        slot_w = jnp.arange(s.live_w.shape[0])  # this phase's width
        pos_w = s.n_prompt_w + s.t_w  # the position the fed-back token is written at
        need_w = s.live_w & (pos_w >= s.pages_w * page_size)
        free_n, new_page_w, granted_w = _allocate(c.free_n, need_w, s.row_w, num_pages)
        table_wj = s.table_wj.at[slot_w, jnp.where(granted_w, s.pages_w, j_max)].set(new_page_w, mode="drop")
        pages_w = s.pages_w + granted_w
        starved_w = need_w & ~granted_w
        go_w = s.live_w & ~starved_w
        page_col_w = jnp.minimum(pos_w // page_size, j_max - 1)
        write_page_w = jnp.where(go_w, table_wj[slot_w, page_col_w], num_pages)  # else dropped
        write_at_w = pos_w % page_size
        length_w = jnp.where(go_w, pos_w + 1, 0)
        columns = jnp.max(jnp.where(go_w, page_col_w + 1, 1))

        def attention(attn, x_w1d, pos_w1, inv_freq, pool: paged_kv.Pool):
            k_w1kh, v_w1kh = attn.keys_values(x_w1d, pos_w1, inv_freq)
            pool = kv.write_token(pool, write_page_w, write_at_w, k_w1kh[:, 0], v_w1kh[:, 0])
            q_wnh = attn.queries(x_w1d, pos_w1, inv_freq)[:, 0]
            out_wnh = kv.attend(q_wnh, pool, table_wj, length_w, columns)
            return attn.project_out(out_wnh[:, None]), pool

        pos_w1 = pos_w[:, None]
        h_w1d, pools = model.forward_with_attention(s.token_w[:, None], pos_w1, attention, c.pools)
        t_next_w = s.t_w + 1
        token_w, logp_w, ends_w = choose(model.head(h_w1d)[:, 0], s.row_w, t_next_w)
        out = record(c.out, s.row_w, t_next_w, token_w, logp_w, go_w)
        ended_w = go_w & ends_w
        free_n = _release(free_n, table_wj, pages_w, ended_w, num_pages)
        live_w = s.live_w & ~ended_w
        pages_w = jnp.where(ended_w, 0, pages_w)

        # Every live slot waits for a page: evict the live row with the largest index (the
        # lowest keeps priority for pages, so it finishes; the pool holds one whole row).
        stuck = jnp.any(s.live_w) & ~jnp.any(go_w)
        victim_w = stuck & (slot_w == jnp.argmax(jnp.where(s.live_w, s.row_w, -1)))
        free_n = _release(free_n, table_wj, pages_w, victim_w, num_pages)
        victim_row = jnp.where(stuck, jnp.max(jnp.where(victim_w, s.row_w, -1)), b)
        out = SampleOutput(  # its tokens so far are decoded again
            out.tokens.at[victim_row].set(pad_token_id, mode="drop"),
            out.mask.at[victim_row].set(False, mode="drop"),
            out.logprobs.at[victim_row].set(0.0, mode="drop"),
        )
        stats = c.stats
        stats = stats._replace(
            decode_steps=stats.decode_steps + jnp.any(s.live_w),
            slot_steps=stats.slot_steps + jnp.any(s.live_w) * slot_w.shape[0],
            useful_slot_steps=stats.useful_slot_steps + jnp.sum(go_w),
            evictions=stats.evictions + stuck,
            peak_pages=jnp.maximum(stats.peak_pages, num_pages - jnp.sum(c.free_n) + jnp.sum(granted_w)),
        )
        slots_ = s._replace(
            live_w=live_w & ~victim_w,
            t_w=jnp.where(go_w, t_next_w, s.t_w),
            token_w=jnp.where(go_w, token_w, s.token_w),
            pages_w=jnp.where(victim_w, 0, pages_w),
            table_wj=table_wj,
        )
        return _Carry(
            pools=pools,
            free_n=free_n,
            slots=slots_,
            pending_b=c.pending_b.at[victim_row].set(True, mode="drop"),
            starved=jnp.any(starved_w),
            out=out,
            stats=stats,
        )

    def body(c: _Carry) -> _Carry:
        return decode(jax.lax.while_loop(can_admit, admit, c))

    cfg, dtype = model.config, model.dtype
    k, h = cfg.num_kv_heads, cfg.resolved_head_dim
    pools = tuple(kv.init(num_pages, k, h, page_size, dtype) for _ in range(cfg.num_layers))
    zero_w = jnp.zeros((w,), jnp.int32)
    carry = _Carry(
        pools=pools,
        free_n=jnp.ones((num_pages,), bool),
        slots=_Slots(
            live_w=jnp.zeros((w,), bool),
            row_w=zero_w,
            t_w=zero_w,
            token_w=zero_w,
            n_prompt_w=zero_w,
            pages_w=zero_w,
            table_wj=jnp.zeros((w, j_max), jnp.int32),
        ),
        pending_b=jnp.ones((b,), bool),
        starved=jnp.asarray(False),
        out=SampleOutput(
            jnp.full((b, n), pad_token_id, jnp.int32),
            jnp.zeros((b, n), bool),
            jnp.zeros((b, n), jnp.float32),
        ),
        stats=EngineStats(*(jnp.int32(0) for _ in EngineStats._fields)),
    )
    # Tail narrowing: once the queue has drained and at most `narrower` rows are live, the live
    # slots move to the front (their pages stay where they are: only the slot state moves) and
    # decoding continues at that width, so the long tail of lengths does not pay for W slots.
    # Only with a pool that holds W/2 whole rows: then no tail slot can starve, nothing is
    # evicted back to the queue, and the tail loops need no admission (nor its prefill, which
    # would be compiled once more per width).
    widths = tail_widths(w) if num_pages >= (w // 2) * j_max else (w,)
    until = widths[1:] + (0,)  # each phase runs while more rows than this are live

    def more_than(narrower):
        return lambda c: jnp.any(c.pending_b) | (jnp.sum(c.slots.live_w) > narrower)

    carry = jax.lax.while_loop(more_than(until[0]), body, carry)
    for width, narrower in zip(widths[1:], until[1:]):  # the queue is empty from here on
        carry = carry._replace(slots=_compact(carry.slots, width))
        carry = jax.lax.while_loop(more_than(narrower), decode, carry)
    return EngineOutput(carry.out, carry.stats)


def tail_widths(slots: int) -> tuple[int, ...]:
    """The decode widths of the engine's phases: W, then halved at most twice, never below
    W / 4 or 1. On CPU a decode step's cost falls with its width (most of it is the slots'
    matmul rows), so the tail after the queue drains runs at a half and a quarter width."""
    widths = [slots]
    while len(widths) < 3 and widths[-1] // 2 >= max(1, slots // 4):
        widths.append(widths[-1] // 2)
    return tuple(widths)


def _compact(slots: _Slots, width: int) -> _Slots:
    """The first `width` slots after moving every live slot to the front (in slot order);
    the caller guarantees at most `width` are live."""
    order = jnp.argsort(~slots.live_w, stable=True)[:width]
    return jax.tree.map(lambda a: a[order], slots)


def _allocate(free_n, need_w, priority_w, num_pages):
    """One free page for each slot that needs one, lowest priority value first while pages
    last. Returns (free_n, page_w (num_pages where none), granted_w)."""
    w = need_w.shape[0]
    ahead_w = jnp.sum(need_w[None, :] & (priority_w[None, :] < priority_w[:, None]), axis=1)
    free_ids = jnp.nonzero(free_n, size=w, fill_value=num_pages)[0]
    granted_w = need_w & (ahead_w < jnp.sum(free_n))
    page_w = jnp.where(granted_w, free_ids[jnp.minimum(ahead_w, w - 1)], num_pages)
    return free_n.at[page_w].set(False, mode="drop"), page_w, granted_w


def _release(free_n, table_wj, pages_w, release_w, num_pages):
    """Frees the pages held by the slots in release_w."""
    held_wj = release_w[:, None] & (jnp.arange(table_wj.shape[1])[None, :] < pages_w[:, None])
    return free_n.at[jnp.where(held_wj, table_wj, num_pages)].set(True, mode="drop")
