"""Independent references written as plain Python loops, straight from PURE_SPEC.

Deliberately slow and obvious: they share no code with purejax.
"""

import math

import numpy as np


def sum_returns(r, m, gamma=1.0):
    out = [0.0] * len(r)
    for t in range(len(r)):
        if m[t]:
            out[t] = sum(gamma ** (k - t) * r[k] * m[k] for k in range(t, len(r)))
    return out


def min_returns(r, e, m):
    out = [0.0] * len(r)
    for t in range(len(r)):
        future = [r[k] for k in range(t, len(r)) if e[k] and m[k]]
        if m[t] and future:
            out[t] = min(future)
    return out


def soft_min_rewards(r, e, temperature):
    ends = [k for k in range(len(r)) if e[k]]
    out = [0.0] * len(r)
    if not ends:
        return out
    z = [math.exp(-r[k] / temperature) for k in ends]
    for k, zk in zip(ends, z):
        out[k] = zk / sum(z) * r[k]
    return out


def worst_step_returns(r, e, m):
    ends = [k for k in range(len(r)) if e[k] and m[k]]
    out = [0.0] * len(r)
    if not ends:
        return out
    w = min(ends, key=lambda k: (r[k], k))
    for t in range(w + 1):
        if m[t]:
            out[t] = r[w]
    return out


def all_token_min_returns(r, m):
    return [min(r[k] * m[k] for k in range(t, len(r))) if m[t] else 0.0 for t in range(len(r))]


def token_mean_advantages(g, m):
    k_, n = len(g), len(g[0])
    out = np.zeros((k_, n))
    for i in range(k_):
        others = [sum(g[k][t] * m[k][t] for t in range(n)) for k in range(k_) if k != i]
        b = sum(others) / ((k_ - 1) * n)
        for t in range(n):
            out[i][t] = (g[i][t] - b) * m[i][t]
    return out


def token_rate_rewards(r, e, m):
    k_, n = len(r), len(r[0])
    out = np.zeros((k_, n))
    for i in range(k_):
        reward = sum(r[k][t] for k in range(k_) if k != i for t in range(n) if e[k][t] and m[k][t])
        length = sum(m[k][t] for k in range(k_) if k != i for t in range(n))
        rate = reward / max(length, 1)
        start = 0
        for t in range(n):
            if e[i][t] and m[i][t]:
                # OpenRLHF's tokens per step: the step-end token is not counted.
                tokens = sum(1 for s in range(start, t) if m[i][s])
                out[i][t] = r[i][t] - rate * tokens
                start = t + 1
    return out


def step_mean_rewards(r, e, m):
    k_, n = len(r), len(r[0])
    per_step = []
    for k in range(k_):
        steps = [r[k][t] for t in range(n) if e[k][t] and m[k][t]]
        per_step.append(sum(steps) / len(steps) if steps else None)
    out = np.zeros((k_, n))
    for i in range(k_):
        others = [per_step[k] for k in range(k_) if k != i and per_step[k] is not None]
        b = sum(others) / len(others) if others else 0.0
        for t in range(n):
            if e[i][t] and m[i][t]:
                out[i][t] = r[i][t] - b
    return out


def gae(r, v, m, gamma, lam):
    n = len(r)
    adv = [0.0] * n
    last = 0.0
    for t in reversed(range(n)):
        if not m[t]:
            last = 0.0
            continue
        v_next = v[t + 1] if t + 1 < n and m[t + 1] else 0.0
        delta = r[t] + gamma * v_next - v[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


def ppo_loss(logp, old, adv, lo, hi, dual):
    out = []
    for a, b, c in zip(logp, old, adv):
        ratio = math.exp(a - b)
        loss = max(-c * ratio, -c * min(max(ratio, 1 - lo), 1 + hi))
        if dual is not None and c < 0:
            loss = min(loss, -c * dual)
        out.append(loss)
    return out


def openrlhf_advantages(r, e, m, dense, vr, temperature):
    """OpenRLHF's PURE script on one group: soft-min, token-rate baseline (tokens per step
    without the step end, rate over full lengths), own-RLOO VR on the last token, dense
    reward, sum-form returns zeroed on step ends, whitening of the non-zero tokens."""
    k_, n = len(r), len(r[0])
    r_star = [soft_min_rewards(r[i], [e[i][t] and m[i][t] for t in range(n)], temperature) for i in range(k_)]
    total = [sum(r_star[i]) for i in range(k_)]
    length = [sum(1 for t in range(n) if m[i][t]) for i in range(k_)]
    x = np.zeros((k_, n))
    for i in range(k_):
        rate = sum(total[k] for k in range(k_) if k != i) / sum(length[k] for k in range(k_) if k != i)
        prev = -1
        for t in range(n):
            if e[i][t] and m[i][t]:
                x[i][t] = r_star[i][t] - rate * (t - prev - 1)
                prev = t
        last = length[i] - 1
        x[i][last] += vr[i] - sum(vr[k] for k in range(k_) if k != i) / (k_ - 1)
    adv = np.zeros((k_, n))
    for i in range(k_):
        for t in range(n):
            if m[i][t] and not e[i][t]:
                adv[i][t] = sum(x[i][s] + dense[i][s] for s in range(t, n) if m[i][s])
    nonzero = [(i, t) for i in range(k_) for t in range(n) if m[i][t] and adv[i][t] != 0]
    mean = sum(adv[i][t] for i, t in nonzero) / len(nonzero)
    var = sum((adv[i][t] - mean) ** 2 for i in range(k_) for t in range(n) if m[i][t]) / len(nonzero)
    out = np.zeros((k_, n))
    for i, t in nonzero:
        out[i][t] = (adv[i][t] - mean) / math.sqrt(max(var, 1e-8))
    return out
