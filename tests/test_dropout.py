"""Seeded dropout masks (ctsurv.dropout): the keep rate, and one draw for many masks giving
exactly the masks of consecutive calls (what lets the batched trainer draw every mask of a
step at once and still train the models the one-model trainer trains)."""

from __future__ import annotations

import torch

from ctsurv.dropout import MaskStream


def test_keep_rate_is_one_minus_p():
    for p in (0.2, 0.5):
        keep = MaskStream(0).keep((1000, 1000), p)
        # 10**6 Bernoulli(1 - p) draws: standard error below 5e-4
        assert abs(keep.float().mean().item() - (1 - p)) < 2.5e-3, p
        # independent positions: the rate of a kept element after a kept one is the same
        flat = keep.view(-1)
        assert abs(flat[1:][flat[:-1]].float().mean().item() - (1 - p)) < 3e-3


def test_one_draw_gives_the_masks_of_consecutive_calls():
    # sizes that are and are not multiples of four (each mask uses ceil(n / 4) words), a mask
    # with no element, and two dropout rates
    shapes = [(7, 13), (4, 100), (0, 100), (3,), (230, 1280), (1, 1)]
    ps = [0.2, 0.2, 0.2, 0.5, 0.2, 0.5]
    one, many = MaskStream(11), MaskStream(11)
    expected = [one.keep(s, p) for s, p in zip(shapes, ps)]
    got = many.keep_many(shapes, ps)
    assert [tuple(g.shape) for g in got] == [tuple(s) for s in shapes]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    # and the streams stand at the same place afterwards
    assert torch.equal(one.keep((50,), 0.2), many.keep((50,), 0.2))
    # with a single rate (one comparison for all masks) as well
    a, b = MaskStream(3), MaskStream(3)
    same = [(5, 9), (2, 2), (64, 1280)]
    assert all(torch.equal(x, y) for x, y in zip([a.keep(s, 0.2) for s in same], b.keep_many(same, [0.2] * 3)))
