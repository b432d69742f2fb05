"""Rank-counting core of the concordance indices (merge-sort tree, sorted suffixes).

Counts "how many later patients have a smaller / tied score" for every event at once, in
O((m + q) log^2 m), instead of the O(n^2) double loop over pairs.
"""

from __future__ import annotations

import numpy as np


def _suffix_count_less(ranks: np.ndarray, starts: np.ndarray, k: np.ndarray) -> np.ndarray:
    """For every query ``q``: ``#{j >= starts[q] : ranks[j] < k[q]}``.

    Merge-sort-tree counting, vectorised per level: the suffix ``[s, m)`` is covered by one
    aligned block per level (block ``ceil(s / 2**l)`` at level ``l`` when that index is odd,
    plus the root block when ``s == 0``); inside a level the blocks are sorted by
    ``block * R + rank`` so one ``searchsorted`` counts every query. O((m + q) log^2 m).
    """
    m = ranks.shape[0]
    out = np.zeros(starts.shape[0], dtype=np.int64)
    if m == 0 or starts.shape[0] == 0:
        return out
    n_rank = int(max(ranks.max() + 1, k.max())) + 1
    levels = max(0, int(np.ceil(np.log2(m))))
    pos = np.arange(m, dtype=np.int64)
    for lev in range(levels + 1):
        b = (starts + (1 << lev) - 1) >> lev
        if lev < levels:
            use = ((b & 1) == 1) & ((b << lev) < m)
        else:
            use = b == 0
        if not use.any():
            continue
        keys = np.sort((pos >> lev) * n_rank + ranks)
        bu = b[use]
        out[use] += np.searchsorted(keys, bu * n_rank + k[use]) - np.minimum(bu << lev, m)
    return out


def _suffix_window_counts(x: np.ndarray, starts: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """For every query: ``#{j >= start : x_j < lo}`` and ``#{j >= start : x_j <= hi}``."""
    uniq = np.unique(x)
    ranks = np.searchsorted(uniq, x).astype(np.int64)
    k_lo = np.searchsorted(uniq, lo, side="left").astype(np.int64)
    k_hi = np.searchsorted(uniq, hi, side="right").astype(np.int64)
    q = starts.shape[0]
    both = _suffix_count_less(ranks, np.concatenate([starts, starts]), np.concatenate([k_lo, k_hi]))
    return both[:q], both[q:]


def _sorted_order(time: np.ndarray, event: np.ndarray):
    """Order by time, events before censorings at a tied time; and per-patient suffix starts.

    Returns ``order``, ``strict`` and ``incl``: for the patient at sorted position ``p``,
    ``strict[p]`` is the first position with a larger time and ``incl[p]`` the first position
    after the events tied with it (so ``[incl[p], n)`` adds the censorings at the same time).
    """
    order = np.lexsort((~event, time))
    ts, es = time[order], event[order]
    first = np.searchsorted(ts, ts, side="left")
    strict = np.searchsorted(ts, ts, side="right")
    n_ev_before = np.concatenate(([0], np.cumsum(es)))
    incl = first + (n_ev_before[strict] - n_ev_before[first])
    return order, strict, incl
