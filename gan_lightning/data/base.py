"""Base LightningDataModule: every dataset yields ``(sample, label)`` batches through a resumable loader.

One loader batch holds ``batch_size * batches_per_step`` samples: the real data of one generator iteration
(``batches_per_step`` is n_critic, set by GANModule), so Lightning's batch counters count generator steps.

Subclasses only build the training dataset and describe it (``data_shape``, ``kind``); the GAN module
never special-cases a dataset.
"""

from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from gan_lightning.data.loader import ResumableDataLoader, ResumableSampler
from gan_lightning.errors import ConfigurationError, DatasetError


class GANDataModule(LightningDataModule):
    """Shared loader logic. ``seed`` fixes the data order (together with the epoch), independent of the model seed."""

    #: "image" for (C, H, W) tensors in [-1, 1], "points" for low-dimensional vectors.
    kind: str = "image"

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0, shuffle: bool = True):
        super().__init__()
        # Under LightningCLI this records the whole data config, so a resume can check it is unchanged.
        self.save_hyperparameters()
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ConfigurationError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.shuffle = shuffle
        #: Set by GANModule to n_critic: one loader batch feeds one generator iteration.
        self.batches_per_step = 1
        self._train: Optional[Dataset] = None

    def build_train_dataset(self) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        if self._train is None:
            self._train = self.build_train_dataset()
            if len(self._train) == 0:  # type: ignore[arg-type]
                raise DatasetError(f"{type(self).__name__} found no samples; check the data location.")

    @property
    def train_dataset(self) -> Dataset:
        self.setup()
        assert self._train is not None
        return self._train

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        dataset = self.train_dataset
        per_rank = len(dataset) // world  # type: ignore[arg-type]
        per_step = self.batch_size * self.batches_per_step
        if per_rank < per_step:
            raise ConfigurationError(
                f"The dataset has {len(dataset)} samples ({per_rank} per process), fewer than one generator step needs "  # type: ignore[arg-type]
                f"(batch_size={self.batch_size} x n_critic={self.batches_per_step}); lower --data.init_args.batch_size."
            )
        sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=self.shuffle, seed=self.seed)
        return ResumableDataLoader(
            dataset,
            batch_size=per_step,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def reference_indices(self, n: int, seed: int = 0) -> list[int]:
        """``n`` training-set indices drawn without replacement by their own seeded generator: a fixed reference set.

        Not the first ``n``: a folder dataset is sorted by path, so its first samples are often all one class.
        """
        dataset = self.train_dataset
        n = min(n, len(dataset))  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(len(dataset), generator=generator)[:n].tolist()  # type: ignore[arg-type]

    def real_batch(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` training samples at :meth:`reference_indices` (the same ones at every call) for plots and metrics."""
        dataset = self.train_dataset
        return torch.stack([dataset[i][0] for i in self.reference_indices(n, seed)])

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train_dataset[0][0].shape)
