"""P×K batches without resampling: the identity sampler of the CTL training recipe.

Each batch holds up to ``p`` items and up to ``k`` images of each (Hermans et al. "In Defense of
the Triplet Loss", 2017; ``p = 16, k = 4`` in the CTL reference). Unlike the reid-strong-baseline
sampler, images are never drawn twice: the CTL paper (Wieczorek et al., 2021, training details)
found that resampling an item's few images to fill ``k`` slots hurts its centroid. So:

- an item with fewer than ``k`` images contributes all it has (2 ≤ size < k);
- an item with a single image is never batched: it has no positive and no centroid;
- an item with more than ``k`` images is shuffled and cut into chunks of ``k`` that land in
  different batches over the epoch; a final chunk of one image is dropped for that epoch (merging
  it would make a chunk of ``k + 1``). Since the item is reshuffled every epoch, a different
  image sits out each time;
- no batch holds two chunks of one item; a batch left with fewer than 2 items at the end of the
  epoch is dropped (no negatives for the metric losses).

Batches may therefore be smaller than ``p * k``. The sampler yields the batches' indices one
after another (a ``Sampler[int]``); batch boundaries are only kept by a ``DataLoader`` driven
through :class:`model.data.pk_batch_sampler.PKBatchSampler` (``batch_sampler=``). A
``DataLoader(batch_size=p * k, sampler=...)`` regroups the stream into fixed chunks of
``p * k``, which matches the batches only when every batch is full.

Determinism: the epoch's batches depend only on (labels, p, k, seed, epoch). Under DDP every
rank builds the same list, trims it to a multiple of ``world_size`` and takes every
``world_size``-th batch from ``rank``: disjoint shares, the same number of batches per rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

# The fewest distinct items that make a useful batch: one positive pair needs a negative.
MIN_ITEMS_PER_BATCH = 2
# The fewest images of an item that make a useful chunk: an anchor and a positive.
MIN_IMAGES_PER_ITEM = 2


class PKSampler(Sampler[int]):
    """Indices of P×K batches over ``labels`` (``labels[i]`` is the item id of dataset index i)."""

    def __init__(
        self,
        labels: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if p < MIN_ITEMS_PER_BATCH:
            raise ValueError(f"p must be >= {MIN_ITEMS_PER_BATCH} (items per batch), got {p}")
        if k < MIN_IMAGES_PER_ITEM:
            raise ValueError(f"k must be >= {MIN_IMAGES_PER_ITEM} (images per item), got {k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world={world_size}")
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(index)
        self.indices_by_label = {
            label: indices
            for label, indices in sorted(by_label.items())
            if len(indices) >= MIN_IMAGES_PER_ITEM
        }
        if len(self.indices_by_label) < MIN_ITEMS_PER_BATCH:
            raise ValueError(
                f"P×K sampling needs at least {MIN_ITEMS_PER_BATCH} items with "
                f"{MIN_IMAGES_PER_ITEM}+ images; found {len(self.indices_by_label)}"
            )
        self.p = p
        self.k = k
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    @property
    def batch_size(self) -> int:
        """The largest batch: ``p * k`` images."""
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle is used (call before iterating, as with DDP)."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch (lists of dataset indices)."""
        if self._cached is None or self._cached[0] != self.epoch:
            everyone = self._all_batches(self.epoch)
            per_rank = len(everyone) // self.world_size
            mine = everyone[: per_rank * self.world_size][self.rank :: self.world_size]
            self._cached = (self.epoch, mine)
        return self._cached[1]

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        """Exact number of indices this rank yields in the current epoch."""
        return sum(len(batch) for batch in self.batches())

    def _all_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        rounds: list[list[list[int]]] = []
        for indices in self.indices_by_label.values():
            shuffled = [indices[i] for i in rng.permutation(len(indices))]
            chunks = [shuffled[i : i + self.k] for i in range(0, len(shuffled), self.k)]
            if len(chunks[-1]) < MIN_IMAGES_PER_ITEM:
                chunks.pop()
            for r, chunk in enumerate(chunks):
                if r == len(rounds):
                    rounds.append([])
                rounds[r].append(chunk)
        # First chunks of every item, then second chunks, ...: an item's chunks spread out over
        # the epoch instead of queueing next to each other.
        queue: deque[list[int]] = deque()
        for chunks_of_round in rounds:
            queue.extend(chunks_of_round[i] for i in rng.permutation(len(chunks_of_round)))
        label_of = {i: label for label, ids in self.indices_by_label.items() for i in ids}
        batches = []
        while queue:
            taken: list[list[int]] = []
            skipped: list[list[int]] = []
            seen: set[int] = set()
            while queue and len(taken) < self.p:
                chunk = queue.popleft()
                label = label_of[chunk[0]]
                if label in seen:
                    skipped.append(chunk)
                else:
                    seen.add(label)
                    taken.append(chunk)
            if len(taken) < MIN_ITEMS_PER_BATCH:
                # The whole queue was scanned: what is left is chunks of a single item.
                break
            queue.extendleft(reversed(skipped))
            batches.append([i for chunk in taken for i in chunk])
        return [batches[i] for i in rng.permutation(len(batches))]
