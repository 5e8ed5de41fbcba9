"""P×K sampler properties: no resampling, batch structure, exact length, determinism, DDP shares."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from model.data.pk_batch_sampler import PKBatchSampler
from model.data.pk_sampler import PKSampler


def labels_from_counts(counts: list[int]) -> list[int]:
    """Item ``i`` gets ``counts[i]`` images, interleaved so indices of one item are not adjacent."""
    labels: list[int] = []
    remaining = list(counts)
    while any(remaining):
        for item, left in enumerate(remaining):
            if left:
                labels.append(item)
                remaining[item] -= 1
    return labels


counts_strategy = st.lists(st.integers(1, 11), min_size=2, max_size=40).filter(
    lambda c: sum(n >= 2 for n in c) >= 2
)


@settings(max_examples=150, deadline=None)
@given(counts=counts_strategy, p=st.integers(2, 6), k=st.integers(2, 5), epoch=st.integers(0, 3))
def test_batch_structure(counts: list[int], p: int, k: int, epoch: int) -> None:
    labels = labels_from_counts(counts)
    sampler = PKSampler(labels, p, k, seed=3)
    sampler.set_epoch(epoch)
    batches = sampler.batches()
    flat = [i for b in batches for i in b]
    assert list(sampler) == flat
    assert len(sampler) == len(flat)
    # Without resampling: no index twice in the whole epoch, let alone in one batch.
    assert len(set(flat)) == len(flat)
    per_item_yielded: Counter[int] = Counter()
    for batch in batches:
        per_item = Counter(labels[i] for i in batch)
        assert 2 <= len(per_item) <= p
        assert all(2 <= n <= k for n in per_item.values()), per_item
        per_item_yielded.update(per_item)
    for item, n in enumerate(counts):
        # Singletons never appear; no item yields more than it has, minus a lone last chunk.
        cap = 0 if n < 2 else n - (1 if n % k == 1 else 0)
        assert per_item_yielded[item] <= cap
    assert sampler.batch_size == p * k


def test_coverage_when_nothing_is_left_over() -> None:
    # 12 items × 8 images, k=4, p=4: 24 chunks of 4 make 6 full batches, nothing dropped.
    labels = labels_from_counts([8] * 12)
    sampler = PKSampler(labels, p=4, k=4)
    batches = sampler.batches()
    assert len(batches) == 6 and all(len(b) == 16 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(96))


def test_chunking_of_items_with_more_than_k_images() -> None:
    # k=4: 5 images → one chunk of 4 (the lone fifth sits out); 6 → 4 + 2; 3 → 3; 1 → never.
    counts = [5, 6, 3, 1, 2]
    labels = labels_from_counts(counts)
    sampler = PKSampler(labels, p=8, k=4)
    for epoch in range(6):
        sampler.set_epoch(epoch)
        yielded = Counter(labels[i] for i in sampler)
        # Round one (first chunks of items 0, 1, 2, 4) fills one batch; round two is item 1's
        # chunk of 2 alone, a batch with no negatives, so it is dropped.
        assert [yielded[i] for i in range(5)] == [4, 4, 3, 0, 2]
        assert len(sampler.batches()) == 1
        for batch in sampler.batches():
            assert max(Counter(labels[i] for i in batch).values()) <= 4


def test_deterministic_given_seed_and_epoch() -> None:
    labels = labels_from_counts([2, 3, 4, 5, 6, 7, 8, 9] * 3)
    a, b = PKSampler(labels, 4, 3, seed=11), PKSampler(labels, 4, 3, seed=11)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(3)
    assert list(a) != first
    a.set_epoch(2)
    assert list(a) == first
    c = PKSampler(labels, 4, 3, seed=12)
    c.set_epoch(2)
    assert list(c) != first


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shares_are_disjoint_and_equal(world_size: int) -> None:
    labels = labels_from_counts([2, 3, 4, 5, 6, 7, 8, 9, 10, 4] * 4)
    single = PKSampler(labels, 4, 4, seed=5)
    single.set_epoch(1)
    everyone = single.batches()
    shares = []
    for rank in range(world_size):
        s = PKSampler(labels, 4, 4, seed=5, rank=rank, world_size=world_size)
        s.set_epoch(1)
        shares.append(s.batches())
    counts = {len(share) for share in shares}
    assert counts == {len(everyone) // world_size}
    flat = [i for share in shares for b in share for i in b]
    assert len(flat) == len(set(flat))
    # Together the ranks run the single-process epoch, trimmed to a multiple of world_size.
    kept = everyone[: len(everyone) // world_size * world_size]
    assert sorted(map(tuple, (b for share in shares for b in share))) == sorted(map(tuple, kept))


def test_batch_sampler_keeps_batches_whole_in_a_dataloader() -> None:
    labels = labels_from_counts([3, 2, 5, 4, 2, 6, 3])
    sampler = PKSampler(labels, p=3, k=4, seed=1)
    dataset = TensorDataset(torch.arange(len(labels)), torch.tensor(labels))
    loader = DataLoader(dataset, batch_sampler=PKBatchSampler(sampler))
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
        got = [idx.tolist() for idx, _ in loader]
        assert got == sampler.batches()
        assert len(loader) == len(got)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="at least 2 items"):
        PKSampler([0, 0, 1, 2, 3], p=4, k=4)
    with pytest.raises(ValueError, match="p must be"):
        PKSampler([0, 0, 1, 1], p=1, k=4)
    with pytest.raises(ValueError, match="k must be"):
        PKSampler([0, 0, 1, 1], p=2, k=1)
    with pytest.raises(ValueError, match="rank"):
        PKSampler([0, 0, 1, 1], p=2, k=2, rank=2, world_size=2)
