import gzip
import struct
import warnings

import pytest
import torch
from PIL import Image

from gan_lightning.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    GaussianMixtureDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    ResumableDataLoader,
    ResumableSampler,
    mixture_modes,
)
from gan_lightning.errors import ConfigurationError, DatasetError


def test_digits_are_offline_images_in_range():
    dm = DigitsDataModule(image_size=32, channels=1, batch_size=16)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 32, 32) and y.shape == (16,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.9 and x.max() > 0.9
    assert len(dm.train_dataset) == 1797
    assert DigitsDataModule(channels=3).data_shape == (3, 32, 32)


def test_digits_subset_is_fixed_by_its_own_seed_and_checked():
    full = DigitsDataModule(image_size=8).train_dataset.tensors[0]
    a, b = DigitsDataModule(image_size=8, subset=100, seed=1), DigitsDataModule(image_size=8, subset=100, seed=2)
    xa, xb = a.train_dataset.tensors[0], b.train_dataset.tensors[0]
    assert xa.shape == (100, 1, 8, 8) and torch.equal(xa, xb)  # the training seed does not change the subset
    rows = {tuple(row.flatten().tolist()) for row in full}
    assert all(tuple(row.flatten().tolist()) in rows for row in xa)  # real digits, not resampled ones
    other = DigitsDataModule(image_size=8, subset=100, subset_seed=1).train_dataset.tensors[0]
    assert not torch.equal(xa, other)
    assert len(set(DigitsDataModule(image_size=8, subset=500).train_dataset.tensors[1].tolist())) == 10
    for bad in (0, 1798):
        with pytest.raises(ConfigurationError, match="subset must be between 1 and 1797"):
            DigitsDataModule(subset=bad)
    with pytest.raises(ConfigurationError, match="fewer than one generator step needs"):
        DigitsDataModule(image_size=8, subset=10, batch_size=64).train_dataloader()


def test_digits_held_out_are_exactly_the_digits_a_subset_leaves_out():
    full = DigitsDataModule(image_size=8).train_dataset.tensors[0]
    train = DigitsDataModule(image_size=8, subset=100).train_dataset.tensors[0]
    rest = DigitsDataModule(image_size=8, subset=100, held_out=True).train_dataset.tensors[0]
    assert len(rest) == 1697
    as_rows = lambda images: sorted(tuple(row.flatten().tolist()) for row in images)  # noqa: E731
    assert as_rows(torch.cat([train, rest])) == as_rows(full)  # together: every digit once
    for subset in (None, 1797):
        with pytest.raises(ConfigurationError, match="held_out=true gives the digits a subset leaves out"):
            DigitsDataModule(subset=subset, held_out=True)


def test_ring8_has_eight_distinct_modes_on_the_unit_circle():
    modes, std = mixture_modes("ring8")
    assert modes.shape == (8, 2) and std == 0.01
    assert torch.allclose(modes.norm(dim=1), torch.ones(8))
    assert torch.cdist(modes, modes).add(torch.eye(8) * 10).min() > 0.7  # no duplicated centre
    assert torch.allclose(modes[2], torch.tensor([0.0, 1.0]), atol=1e-6)


def test_grid25_and_samples_stay_near_their_modes():
    modes, std = mixture_modes("grid25")
    assert modes.shape == (25, 2) and std == 0.05
    assert set(modes[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    dm = GaussianMixtureDataModule("grid25", num_samples=5000)
    x, y = dm.train_dataset.tensors
    dist = (x - modes[y]).norm(dim=1)
    assert dist.max() < 6 * std
    assert torch.bincount(y, minlength=25).min() > 100


def test_unknown_mixture_is_refused():
    with pytest.raises(ConfigurationError, match="ring8"):
        GaussianMixtureDataModule("ring9")


def _write_images(folder, n, size=(20, 12), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, size, color=(i * 20 % 255, 0, 0) if mode == "RGB" else i * 20 % 255).save(folder / f"{i}.png")


def test_flat_image_folder_resized_and_cropped(tmp_path):
    _write_images(tmp_path, 6)
    dm = ImageFolderDataModule(str(tmp_path), image_size=16, channels=3, batch_size=4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert y.tolist() == [0, 0, 0, 0]


def test_class_folder_layout_gives_labels_and_grayscale(tmp_path):
    _write_images(tmp_path / "cats", 3)
    _write_images(tmp_path / "dogs", 3)
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, channels=1, batch_size=6)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 1, 8, 8)
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1] and dm.num_classes == 2


def test_empty_and_missing_folders_are_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match="No images found"):
        ImageFolderDataModule(str(tmp_path / "empty")).setup()
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataModule(str(tmp_path / "nope")).setup()


def test_corrupt_image_names_the_file(tmp_path):
    _write_images(tmp_path, 2)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=1, cache="off")  # decoded per sample
    ds = dm.train_dataset
    bad = [i for i, f in enumerate(ds.files) if f.name == "broken.png"][0]
    with pytest.raises(DatasetError, match="broken.png"):
        ds[bad]


def test_corrupt_image_read_by_a_loader_worker_gives_the_same_one_line_message(tmp_path):
    _write_images(tmp_path, 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    in_process = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=1, num_workers=0, cache="off")
    with pytest.raises(DatasetError) as direct:
        list(in_process.train_dataloader())
    workers = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=1, num_workers=2, cache="off")
    with pytest.raises(DatasetError) as rebuilt:
        list(workers.train_dataloader())  # PyTorch re-raises the worker's error with its traceback as the message
    assert str(rebuilt.value) == str(direct.value)
    assert str(direct.value).startswith(f"Cannot read image {str(tmp_path / 'broken.png')!r} (")
    assert str(direct.value).endswith("Delete or replace the file and restart.") and "\n" not in str(direct.value)
    assert "in DataLoader worker process" in rebuilt.value.worker_traceback  # kept for debugging, not printed


def _write_idx(path, array_bytes, header):
    with open(path, "wb") as f:
        f.write(header + array_bytes)


def test_mnist_reads_local_files_without_download(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = 70
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), dtype=torch.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images.numpy().tobytes(), struct.pack(">IIII", 2051, n, 28, 28))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.numpy().tobytes(), struct.pack(">II", 2049, n))
    dm = MNISTDataModule(root=str(tmp_path), download=False, image_size=32, batch_size=10, num_workers=0)
    dm.prepare_data()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (10, 1, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_missing_torchvision_dataset_with_download_off_says_where(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, num_workers=0)
    with pytest.raises(DatasetError, match=r"not found under .*cifar-10-batches-py.*download=true"):
        dm.setup()


def test_failed_download_says_how_to_work_offline(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self, *a, **k):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    dm = MNISTDataModule(root=str(tmp_path), download=True, num_workers=0)
    with pytest.raises(DatasetError, match=r"Could not download MNIST.*MNIST/raw.*download=false"):
        dm.prepare_data()


def test_batch_larger_than_dataset_is_explained():
    dm = GaussianMixtureDataModule("ring8", num_samples=50, batch_size=100)
    with pytest.raises(ConfigurationError, match="batch_size"):
        dm.train_dataloader()


def test_resumable_loader_order_depends_on_seed_and_epoch_and_resumes_mid_epoch():
    ds = torch.utils.data.TensorDataset(torch.arange(40))

    def loader(seed=0):
        return ResumableDataLoader(ds, batch_size=4, sampler=ResumableSampler(ds, seed=seed))

    a = loader()
    a.sampler.set_epoch(1)
    full = [b[0].tolist() for b in a]
    assert len(full) == 10
    b = loader()
    b.sampler.set_epoch(1)
    assert [x[0].tolist() for x in b] == full  # same (seed, epoch) -> same order
    b.sampler.set_epoch(2)
    assert [x[0].tolist() for x in b] != full
    assert [x[0].tolist() for x in loader(seed=1)] != [x[0].tolist() for x in loader()]

    # consume 3 batches, save, resume in a fresh loader: the rest of the epoch follows exactly
    c = loader()
    c.sampler.set_epoch(1)
    it = iter(c)
    head = [next(it)[0].tolist() for _ in range(3)]
    state = c.state_dict()
    assert state == {"epoch": 1, "consumed": 3} and c.remaining() == 7
    d = loader()
    d.load_state_dict(state)
    d.sampler.set_epoch(1)
    assert head + [x[0].tolist() for x in d] == full
    # the skip applies once: the next epoch is complete
    d.sampler.set_epoch(2)
    assert len(list(d)) == 10


def test_resumable_loader_warns_when_the_loop_resumes_past_a_half_finished_epoch():
    ds = torch.utils.data.TensorDataset(torch.arange(40))
    d = ResumableDataLoader(ds, batch_size=4, sampler=ResumableSampler(ds))
    d.load_state_dict({"epoch": 1, "consumed": 3})  # e.g. a checkpoint that recorded epoch 1 as completed
    d.sampler.set_epoch(2)
    with pytest.warns(UserWarning, match="after batch 3 of 10 in epoch 1, but its loop state resumes in epoch 2"):
        assert len(list(d)) == 10
    d.load_state_dict({"epoch": 1, "consumed": 10})  # the whole epoch was consumed: nothing is skipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(d)) == 10


def test_sampler_shards_across_ranks():
    ds = torch.utils.data.TensorDataset(torch.arange(40))
    parts = [list(ResumableSampler(ds, num_replicas=2, rank=r, seed=0)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 20
    assert sorted(parts[0] + parts[1]) == list(range(40))


def test_in_memory_data_is_fetched_in_batches_but_stays_a_plain_dataset():
    dm = GaussianMixtureDataModule("ring8", num_samples=200, batch_size=50)
    # any other DataLoader over the dataset still collates samples as usual
    x, y = next(iter(torch.utils.data.DataLoader(dm.train_dataset, batch_size=8)))
    assert x.shape == (8, 2) and y.shape == (8,)
    loader = dm.train_dataloader()
    x, y = next(iter(loader))
    assert x.shape == (50, 2) and y.shape == (50,)
    first = loader.sampler  # the batch is exactly the sampler's first indices
    first.set_epoch(0)
    idx = list(first)[:50]
    torch.testing.assert_close(x, dm.train_dataset.tensors[0][idx])
