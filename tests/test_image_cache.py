import os

import numpy as np
import pytest
import torch
from PIL import Image

from gan_lightning.data import ImageFolderDataModule
from gan_lightning.data.image_cache import CachedImageDataset
from gan_lightning.data.folder import ImageFileDataset
from gan_lightning.errors import ConfigurationError, DatasetError


def _write_folder(root, n_per_class=4):
    """PNGs and JPEGs of various sizes and aspect ratios (odd crops included), RGB, grayscale and palette images."""
    rng = np.random.default_rng(0)
    sizes = [(20, 12), (13, 29), (16, 16), (40, 25), (9, 9), (33, 18)]
    for c, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            w, h = sizes[(i + c) % len(sizes)]
            array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(array)
            if i % 3 == 1:
                image = image.convert("L")
            elif i % 3 == 2:
                image = image.convert("P")
            ext = "jpg" if i % 2 else "png"
            if ext == "jpg" and image.mode == "P":
                image = image.convert("RGB")
            image.save(root / name / f"{i}.{ext}")


def _all(dataset):
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mirror", [False, True])
def test_cache_gives_exactly_the_per_sample_tensors(tmp_path, channels, mirror):
    _write_folder(tmp_path / "data")
    kwargs = dict(image_size=8, channels=channels, batch_size=4, mirror=mirror)
    slow = ImageFolderDataModule(str(tmp_path / "data"), cache="off", **kwargs)
    assert isinstance(slow.train_dataset, ImageFileDataset)
    x_ref, y_ref = _all(slow.train_dataset)
    for mode in ("memory", "disk"):
        fast = ImageFolderDataModule(str(tmp_path / "data"), cache=mode, cache_dir=str(tmp_path / "cache"), **kwargs)
        ds = fast.train_dataset
        assert isinstance(ds, CachedImageDataset) and len(ds) == len(slow.train_dataset)
        x, y = _all(ds)
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)  # bit-identical, per sample
        # and through the training loader, a whole batch at a time, in the same order as the per-sample path
        for a, b in zip(fast.train_dataloader(), slow.train_dataloader()):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert fast.num_classes == 2 and x.shape[1:] == (channels, 8, 8)
    if mirror:  # the second half is the first one flipped left-right
        n = len(x_ref) // 2
        assert torch.equal(x_ref[n:], x_ref[:n].flip(-1)) and not torch.equal(x_ref[n:], x_ref[:n])


def test_auto_uses_memory_within_budget_and_explains_when_it_does_not(tmp_path):
    _write_folder(tmp_path)
    within = ImageFolderDataModule(str(tmp_path), image_size=8, channels=3)
    assert isinstance(within.train_dataset, CachedImageDataset) and within.train_dataset.path is None
    over = ImageFolderDataModule(str(tmp_path), image_size=8, channels=3, cache_memory_budget_mb=0.001)
    with pytest.warns(UserWarning, match=r"Image cache off: the 8 decoded images .*exceed cache_memory_budget_mb=0\.001.*"
                      r"decoded with PIL.*cache=disk"):
        dataset = over.train_dataset
    assert isinstance(dataset, ImageFileDataset)


def test_disk_cache_is_reused_and_a_changed_folder_invalidates_it(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write_folder(data)

    def build():
        dm = ImageFolderDataModule(str(data), image_size=8, channels=3, cache="disk", cache_dir=str(cache))
        return dm.train_dataset

    first = build()
    assert sorted(p.name for p in cache.glob("*.npy")) == [first.path.name]
    mtime = first.path.stat().st_mtime_ns
    second = build()
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime  # reused, not rewritten

    Image.new("RGB", (10, 10), (255, 0, 0)).save(data / "cats" / "added.png")  # an added file
    added = build()
    assert added.path != first.path and len(added) == len(first) + 1
    x, _ = _all(added)
    slow = ImageFolderDataModule(str(data), image_size=8, channels=3, cache="off").train_dataset
    assert torch.equal(x, _all(slow)[0])

    # a file rewritten in place with other pixels (its size may even stay the same): its mtime changes
    target = data / "cats" / "added.png"
    Image.new("RGB", (10, 10), (0, 0, 255)).save(target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    modified = build()
    assert modified.path not in (first.path, added.path)
    index = [i for i, f in enumerate(modified.files) if f.name == "added.png"][0]
    assert modified[index][0][2].min() > 0.99  # blue now, as in the folder

    other_size = ImageFolderDataModule(str(data), image_size=4, channels=3, cache="disk", cache_dir=str(cache)).train_dataset
    assert other_size.path != modified.path


def test_cache_file_is_plain_numpy_that_loads_without_pickle(tmp_path):
    _write_folder(tmp_path / "data")
    ds = ImageFolderDataModule(str(tmp_path / "data"), image_size=8, channels=1, cache="disk",
                               cache_dir=str(tmp_path / "cache")).train_dataset
    array = np.load(ds.path, mmap_mode="r", allow_pickle=False)
    assert isinstance(array, np.memmap) and array.dtype == np.uint8 and array.shape == (8, 1, 8, 8)
    with open(ds.path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY"  # the .npy format, not a pickle


def test_truncated_disk_cache_is_rebuilt(tmp_path):
    _write_folder(tmp_path / "data")
    kwargs = dict(image_size=8, channels=3, cache="disk", cache_dir=str(tmp_path / "cache"))
    ds = ImageFolderDataModule(str(tmp_path / "data"), **kwargs).train_dataset
    reference = _all(ds)[0]
    ds.path.write_bytes(ds.path.read_bytes()[:100])
    again = ImageFolderDataModule(str(tmp_path / "data"), **kwargs).train_dataset
    assert torch.equal(_all(again)[0], reference)


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_corrupt_image_still_gets_the_one_line_error(tmp_path, mode):
    _write_folder(tmp_path / "data")
    (tmp_path / "data" / "cats" / "broken.png").write_bytes(b"\x89PNG not really")
    dm = ImageFolderDataModule(str(tmp_path / "data"), image_size=8, cache=mode, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=r"Cannot read image .*broken\.png.* Delete or replace the file") as info:
        dm.setup()
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob("*.tmp*"))  # no half file


def test_cached_dataset_pickles_without_its_mapped_array(tmp_path):
    """DataLoader workers receive the file's path, not a copy of the images."""
    import pickle

    _write_folder(tmp_path / "data")
    ds = ImageFolderDataModule(str(tmp_path / "data"), image_size=8, cache="disk", cache_dir=str(tmp_path / "c")).train_dataset
    ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._images is None and torch.equal(copy[3][0], ds[3][0])


def test_bad_cache_option_is_explained(tmp_path):
    with pytest.raises(ConfigurationError, match="cache must be one of auto, memory, disk, off"):
        ImageFolderDataModule(str(tmp_path), cache="ram")
    with pytest.raises(ConfigurationError, match="cache_memory_budget_mb"):
        ImageFolderDataModule(str(tmp_path), cache_memory_budget_mb=-1)


def test_cache_options_may_change_on_resume_but_the_data_may_not(tmp_path):
    from gan_lightning.runtime.resume import check_resume_options

    stored = {"_class_path": "gan_lightning.data.ImageFolderDataModule", "root": "imgs", "image_size": 32, "cache": "auto",
              "cache_memory_budget_mb": 1024.0, "cache_dir": None}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"datamodule_hyper_parameters": stored}, ckpt)
    data = {"class_path": "gan_lightning.data.ImageFolderDataModule",
            "init_args": {**{k: v for k, v in stored.items() if k != "_class_path"}, "cache": "disk", "cache_dir": "/c"}}
    check_resume_options({}, data, ckpt)  # a loading option: the same tensors, the same run
    data["init_args"]["image_size"] = 64
    with pytest.raises(ConfigurationError, match=r"data.init_args.image_size: 32 in the checkpoint, 64 now"):
        check_resume_options({}, data, ckpt)
