"""A DataLoader whose position can be saved and restored, for exact mid-epoch resume.

The order of an epoch depends only on (seed, epoch, rank) through :class:`ResumableSampler`, a
``DistributedSampler`` (so Lightning leaves it alone under DDP) that can skip the samples a previous run
already consumed. :class:`ResumableDataLoader` counts the batches it has handed out and implements
``state_dict``/``load_state_dict``, which Lightning stores in the checkpoint with the loop state. Its own
``torch.Generator`` is reseeded per epoch, so creating an iterator never draws from the global RNG and
worker seeds are the same in an interrupted and an uninterrupted run.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset


class _BatchedView(Dataset):
    """A TensorDataset, or a dataset with ``get_batch(indices)``, fetched a whole batch at a time.

    The DataLoader calls ``__getitems__`` with the batch's indices; indexing the tensors once instead of
    collating ``batch_size`` single samples keeps small-model training (2D mixtures, digits) as fast as a
    hand-written loop that slices its data tensor. Datasets that assemble batches themselves (the image cache,
    Stacked Digits) implement ``get_batch(indices: LongTensor) -> tuple of tensors``. Only this loader sees the
    view, so any other DataLoader over the same dataset collates as usual.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        if isinstance(self.dataset, TensorDataset):
            return tuple(t[index] for t in self.dataset.tensors)
        return tuple(self.dataset.get_batch(index))  # type: ignore[attr-defined]


def fetches_batches(dataset: Dataset) -> bool:
    """True for datasets this loader reads a batch at a time (see :class:`_BatchedView`)."""
    return isinstance(dataset, TensorDataset) or callable(getattr(dataset, "get_batch", None))


def _already_batched(batch: Any) -> Any:
    return list(batch)


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way through (``skip`` samples on this rank)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """DataLoader over a :class:`ResumableSampler` that remembers how many batches it has handed out."""

    def __init__(self, dataset: Dataset, batch_size: int, sampler: ResumableSampler, **kwargs: Any):
        if fetches_batches(dataset) and "collate_fn" not in kwargs:
            dataset, kwargs["collate_fn"] = _BatchedView(dataset), _already_batched
        super().__init__(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=torch.Generator(), **kwargs
        )
        self.consumed = 0  # batches handed out in the current epoch
        self._epoch_of_consumed = 0
        self._resume_at: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        # Lightning creates the iterator before it sets the sampler's epoch on a restart, so the epoch is
        # read lazily, at the first batch. `consumed` is set now for `remaining()`, and confirmed then.
        self.consumed = self._resume_at[1] if self._resume_at is not None and 0 < self._resume_at[1] < len(self) else 0
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        epoch = sampler.epoch
        skip = 0
        if self._resume_at is not None:
            resume_epoch, resume_consumed = self._resume_at
            self._resume_at = None
            if resume_epoch == epoch and 0 < resume_consumed < len(self):
                skip = resume_consumed
            elif resume_epoch != epoch and 0 < resume_consumed < len(self):
                rank_zero_warn(
                    f"The checkpoint stopped after batch {resume_consumed} of {len(self)} in epoch {resume_epoch}, "
                    f"but its loop state resumes in epoch {epoch}: the rest of epoch {resume_epoch} is skipped, so "
                    "this run differs from an uninterrupted one (the checkpoint recorded a half-finished epoch as "
                    "completed)."
                )
        self.generator.manual_seed(sampler.seed * 1_000_003 + epoch)
        sampler.skip = skip * self.batch_size
        self.consumed, self._epoch_of_consumed = skip, epoch
        for batch in super().__iter__():
            self.consumed += 1
            yield batch

    def remaining(self) -> int:
        """Batches left in the current epoch."""
        return len(self) - self.consumed

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch_of_consumed, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (int(state["epoch"]), int(state["consumed"]))
