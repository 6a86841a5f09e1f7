import itertools

import pytest
import torch

from afnet.data.sampling import (
    dense_indices,
    multi_clip_indices,
    sample_generator,
    segment_indices,
)

LENGTHS = [1, 2, 5, 7, 8, 11, 12, 13, 37, 100, 301]
CLIPS = [1, 3, 8, 12, 16]


def is_sorted(idx):
    return bool((idx[1:] >= idx[:-1]).all())


@pytest.mark.parametrize("n, t", list(itertools.product(LENGTHS, CLIPS)))
def test_tsn_train_properties(n, t):
    for seed in range(5):
        idx = segment_indices(n, t, train=True, generator=sample_generator(seed, 0, n))
        assert idx.shape == (t,) and idx.dtype == torch.long
        assert is_sorted(idx) and int(idx.min()) >= 0 and int(idx.max()) < n
        # one index per segment [i*n/t, (i+1)*n/t)
        for i, j in enumerate(idx.tolist()):
            assert i * n / t - 1 < j < (i + 1) * n / t
        if n < t:  # short videos repeat frames, never go out of range
            assert len(set(idx.tolist())) <= n
        if n >= t:
            assert len(set(idx.tolist())) == t


@pytest.mark.parametrize("n, t", list(itertools.product(LENGTHS, CLIPS)))
def test_tsn_eval_centres(n, t):
    idx = segment_indices(n, t, train=False)
    expected = [int(n / t / 2.0 + n / t * i) for i in range(t)]  # TSM's formula
    assert idx.tolist() == expected
    assert is_sorted(idx)


def test_tsn_short_video_repeats():
    assert segment_indices(3, 8, train=False).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert segment_indices(1, 4, train=False).tolist() == [0, 0, 0, 0]


def test_train_covers_segment_randomly():
    seen = {tuple(segment_indices(40, 4, train=True, generator=sample_generator(0, 0, k)).tolist())
            for k in range(50)}
    assert len(seen) > 40  # random offsets, not a fixed pattern
    firsts = {s[0] for s in seen}
    assert firsts == set(range(10))  # all positions inside segment 0 reachable


@pytest.mark.parametrize("n, t, stride", [(100, 8, 2), (16, 8, 2), (15, 8, 2), (5, 8, 4),
                                          (64, 8, 8), (57, 8, 8)])
def test_dense_properties(n, t, stride):
    span = (t - 1) * stride + 1
    for k in range(10):
        idx = dense_indices(n, t, stride, train=True, generator=sample_generator(1, 0, k))
        assert idx.shape == (t,) and is_sorted(idx) and 0 <= int(idx.min()) and int(idx.max()) < n
        if span <= n:
            assert (idx[1:] - idx[:-1]).eq(stride).all()
    centre = dense_indices(n, t, stride, train=False)
    if span <= n:
        start = int(centre[0])
        assert abs(start - (n - 1 - int(centre[-1]))) <= 1  # centred
    else:
        assert int(centre[0]) == 0 and int(centre[-1]) == n - 1


def test_multi_clip():
    idx = multi_clip_indices(100, 8, 1)
    assert idx.tolist() == [segment_indices(100, 8, train=False).tolist()]
    idx = multi_clip_indices(100, 8, 4)
    assert idx.shape == (4, 8)
    assert all(is_sorted(row) for row in idx)
    assert len({tuple(r) for r in idx.tolist()}) == 4
    d = multi_clip_indices(300, 8, 3, mode="dense", stride=4)
    assert d.shape == (3, 8) and d[0, 0] < d[1, 0] < d[2, 0]


def test_generator_reproducible_and_independent():
    a = torch.rand(4, generator=sample_generator(0, 1, 2))
    b = torch.rand(4, generator=sample_generator(0, 1, 2))
    assert torch.equal(a, b)
    others = [sample_generator(0, 2, 1), sample_generator(0, 1, 3), sample_generator(1, 1, 2)]
    assert all(not torch.equal(a, torch.rand(4, generator=g)) for g in others)


def test_errors():
    with pytest.raises(ValueError, match="num_frames=0"):
        segment_indices(0, 8, train=False)
    with pytest.raises(ValueError, match="needs a generator"):
        segment_indices(10, 8, train=True)
