"""The batch view of a :class:`PKSampler`, for ``DataLoader(batch_sampler=...)``."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from model.data.pk_sampler import PKSampler


class PKBatchSampler(Sampler[list[int]]):
    """Yields the sampler's batches whole, so no batch is cut or merged by the ``DataLoader``
    (P×K batches without resampling can be smaller than ``p * k``)."""

    def __init__(self, sampler: PKSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.sampler.batches())

    def __len__(self) -> int:
        return len(self.sampler.batches())
