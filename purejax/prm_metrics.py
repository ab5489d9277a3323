"""How well a PRM labels held-out steps: p(+) at every position, step accuracy, recall on
good and bad steps, first-error accuracy and ProcessBench's F1, and a console table."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax.prm_data import IGNORE, PRMBatch


@nnx.jit
def _positive_prob(model, input_ids, attention_mask):
    return jax.nn.softmax(model(input_ids, attention_mask), axis=-1)[..., 1]


def positive_probs(model, batch: PRMBatch, batch_size: int = 64) -> np.ndarray:
    """p(+) at every position, float32[N, S] (fixed-shape chunks; the last one padded)."""
    n, out = batch.input_ids.shape[0], []
    for lo in range(0, n, batch_size):
        rows = np.arange(lo, lo + batch_size) % n  # pad the last chunk with earlier rows
        p = _positive_prob(model, jnp.asarray(batch.input_ids[rows]), jnp.asarray(batch.attention_mask[rows]))
        out.append(np.asarray(p)[: min(batch_size, n - lo)])
    return np.concatenate(out)


def step_metrics(p_pos: np.ndarray, labels: np.ndarray, kinds: Sequence[str] | None = None) -> dict:
    """Held-out metrics of PRM probabilities p(+) [N, S] against step labels [N, S].

    step_accuracy: share of labelled steps with (p(+) > 0.5) == label.
    recall_good / recall_bad: that share among good / bad steps; balanced_accuracy their mean.
    first_error_accuracy: among responses with a bad step, the share whose first
      predicted-bad step is the first bad step; no_error_accuracy: among
      all-good responses, the share with no predicted-bad step; process_f1 their
      harmonic mean (ProcessBench's F1).
    by_kind (with `kinds`, one per labelled step in row-major order): per step
      kind, the count, accuracy and mean score 2 p(+) - 1.
    """
    labelled = labels != IGNORE
    good, pred = labels == 1, p_pos > 0.5
    correct = (pred == good)[labelled]
    g = good[labelled]
    out = dict(
        steps=int(labelled.sum()),
        good_share=float(g.mean()),
        step_accuracy=float(correct.mean()),
        recall_good=float(correct[g].mean()) if g.any() else float("nan"),
        recall_bad=float(correct[~g].mean()) if (~g).any() else float("nan"),
    )
    out["balanced_accuracy"] = (out["recall_good"] + out["recall_bad"]) / 2
    s = labels.shape[1]
    # First bad step per row (s = none): labelled positions are the steps in order.
    true_first = np.where((labelled & ~good).any(1), np.argmax(labelled & ~good, axis=1), s)
    pred_first = np.where((labelled & ~pred).any(1), np.argmax(labelled & ~pred, axis=1), s)
    has_error = true_first < s
    hit = true_first == pred_first
    err_acc = float(hit[has_error].mean()) if has_error.any() else float("nan")
    ok_acc = float(hit[~has_error].mean()) if (~has_error).any() else float("nan")
    out.update(first_error_accuracy=err_acc, no_error_accuracy=ok_acc)
    out["process_f1"] = 2 * err_acc * ok_acc / (err_acc + ok_acc) if err_acc + ok_acc > 0 else 0.0
    if kinds is not None:
        kinds = np.asarray(kinds)
        score = 2 * p_pos[labelled] - 1
        out["by_kind"] = {
            k: dict(
                count=int((kinds == k).sum()),
                accuracy=float(correct[kinds == k].mean()),
                mean_score=float(score[kinds == k].mean()),
            )
            for k in sorted(set(kinds.tolist()))
        }
    return out


def format_metrics(m: dict) -> str:
    """A small table of held-out step metrics (for the console)."""
    rows = [
        ("step accuracy", m["step_accuracy"]),
        ("recall on good steps", m["recall_good"]),
        ("recall on bad steps", m["recall_bad"]),
        ("balanced accuracy", m["balanced_accuracy"]),
        ("first-error accuracy", m["first_error_accuracy"]),
        ("no-error accuracy", m["no_error_accuracy"]),
        ("process F1", m["process_f1"]),
    ]
    lines = [f"  {name:<22} {value:.3f}" for name, value in rows]
    lines.append(f"  ({m['steps']} held-out steps, {m['good_share']:.1%} good)")
    for kind, k in m.get("by_kind", {}).items():
        lines.append(
            f"  kind {kind:<16} n={k['count']:<6} accuracy {k['accuracy']:.3f}  mean score {k['mean_score']:+.3f}"
        )
    return "\n".join(lines)
