"""Tiny ImageNet loader on small fakes in the official layout: 3 classes × 4 train + 2 val JPEGs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cldst import ExperimentConfig
from cldst.config import ConfigError, load_preset
from cldst.data import image_folders, load_benchmark
from cldst.data import miniimagenet as mini
from cldst.data import tinyimagenet as tiny
from cldst.data.base import DataError

# Created in this (unsorted) order: the loader numbers classes in sorted wnid order.
WNIDS = ["n09256479", "n01443537", "n04067472"]
SORTED = sorted(WNIDS)
TRAIN, VAL = 4, 2
# val_<i>.JPEG → wnid, deliberately not in file-name order (the labels come from the annotations).
VAL_LABELS = {f"val_{i}.JPEG": w for i, w in enumerate(
    [WNIDS[2], WNIDS[0], WNIDS[1], WNIDS[0], WNIDS[2], WNIDS[1]])}


def _jpeg(rng: np.random.Generator, size: int, gray: bool = False) -> bytes:
    im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    buf = io.BytesIO()
    (im.convert("L") if gray else im).save(buf, "JPEG")  # Tiny ImageNet has a few grayscale JPEGs
    return buf.getvalue()


def make_files(size: int, seed: int = 0) -> dict[str, bytes]:
    """Every file of a tiny-imagenet-200 tree, by path relative to the tree."""
    rng = np.random.default_rng(seed)
    files = {"wnids.txt": "\n".join(WNIDS).encode() + b"\n",
             "words.txt": "".join(f"{w}\tthing {w}\n" for w in WNIDS).encode()}
    for w in WNIDS:
        for i in range(TRAIN):
            files[f"train/{w}/images/{w}_{i}.JPEG"] = _jpeg(rng, size, gray=i == 1)
        files[f"train/{w}/{w}_boxes.txt"] = "".join(
            f"{w}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n" for i in range(TRAIN)).encode()
    for name in VAL_LABELS:
        files[f"val/images/{name}"] = _jpeg(rng, size)
    files["val/val_annotations.txt"] = "".join(
        f"{name}\t{w}\t1\t2\t{size - 3}\t{size - 4}\n" for name, w in VAL_LABELS.items()).encode()
    for i in range(2):
        files[f"test/images/test_{i}.JPEG"] = _jpeg(rng, size)
    return files


@pytest.fixture(scope="module")
def files64() -> dict[str, bytes]:
    return make_files(64)


@pytest.fixture(scope="module")
def files32() -> dict[str, bytes]:
    return make_files(32, seed=1)


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def make_zip(path: Path, files: dict[str, bytes], top: str = f"{tiny.FOLDER}/") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(f"{top}{rel}", data)
    return path


def load(data_dir: Path, size: int = 64, **kw) -> tiny.ImageSplit:
    kw = {"num_classes": len(WNIDS), "download": False, "workers": 1, "progress": False, **kw}
    return tiny.load_tinyimagenet(data_dir, size, **kw)


def pixels(data: bytes) -> np.ndarray:
    """The image's RGB pixels, (3, H, W), as stored."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def expected(files: dict[str, bytes], size: int) -> tuple[torch.Tensor, ...]:
    """Train: sorted wnid, then file name; test: the val images likewise, labelled by the annotations."""
    def decode(data: bytes) -> torch.Tensor:
        return torch.from_numpy(image_folders.decode_image(data, size).copy())

    train = [(SORTED.index(w), f"train/{w}/images/{w}_{i}.JPEG") for w in SORTED for i in range(TRAIN)]
    val = sorted((SORTED.index(w), f"val/images/{n}") for n, w in VAL_LABELS.items())
    return (torch.stack([decode(files[f]) for _, f in train]), torch.tensor([c for c, _ in train]),
            torch.stack([decode(files[f]) for _, f in val]), torch.tensor([c for c, _ in val]))


def assert_same(a: tiny.ImageSplit, b: tiny.ImageSplit) -> None:
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ---------------------------------------------------------------------- layouts, labels, sizes
def test_folder_at_64px_loads_in_wnid_order_with_annotated_val_labels(tmp_path, files64):
    split = load(make_tree(tmp_path / tiny.FOLDER, files64).parent)
    assert split.train_x.shape == (12, 3, 64, 64) and split.test_x.shape == (6, 3, 64, 64)
    assert split.train_x.dtype == split.test_x.dtype == torch.uint8
    assert split.train_y.dtype == split.test_y.dtype == torch.int64
    assert split.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert split.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    train_x, train_y, test_x, test_y = expected(files64, 64)
    assert torch.equal(split.train_x, train_x) and torch.equal(split.test_x, test_x)
    # 64 px is kept as is: the stored pixels, not a resampled copy
    assert np.array_equal(split.train_x[0].numpy(), pixels(files64[f"train/{SORTED[0]}/images/{SORTED[0]}_0.JPEG"]))
    # each validation image carries the label of its annotation line, not of its file order
    for name, wnid in VAL_LABELS.items():
        hit = (split.test_x == torch.from_numpy(pixels(files64[f"val/images/{name}"]))).flatten(1).all(1)
        assert hit.sum() == 1 and split.test_y[hit].item() == SORTED.index(wnid), name
    assert (split.mean, split.std, split.hflip) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True)
    assert split.info["layout"] == "folder" and split.info["classes"] == 3
    assert (split.info["train_images"], split.info["test_images"]) == (12, 6)


def test_official_zip_gives_the_same_tensors_as_the_folder(tmp_path, files64):
    folder = load(make_tree(tmp_path / "a" / tiny.FOLDER, files64).parent)
    zipped = load(make_zip(tmp_path / "b" / tiny.ZIP, files64).parent)
    flat = load(make_zip(tmp_path / "c" / "tiny_imagenet.zip", files64, top="").parent)
    assert_same(folder, zipped)
    assert_same(folder, flat)
    assert zipped.info["layout"] == "zip" and zipped.info["source"] == str(tmp_path / "b" / tiny.ZIP)


def test_resize_64_to_32(tmp_path, files64):
    split = load(make_tree(tmp_path / tiny.FOLDER, files64).parent, 32)
    assert split.train_x.shape == (12, 3, 32, 32) and split.test_x.shape == (6, 3, 32, 32)
    train_x, train_y, test_x, test_y = expected(files64, 32)
    assert torch.equal(split.train_x, train_x) and torch.equal(split.test_x, test_x)
    assert torch.equal(split.train_y, train_y) and torch.equal(split.test_y, test_y)


def test_a_32px_copy_of_the_layout(tmp_path, files32):
    data = make_tree(tmp_path / tiny.FOLDER, files32).parent
    at32, at64 = load(data, 32), load(data, 64)
    assert at32.train_x.shape == (12, 3, 32, 32) and at64.train_x.shape == (12, 3, 64, 64)
    for name, wnid in VAL_LABELS.items():  # the stored 32-px pixels, labelled by the annotations
        hit = (at32.test_x == torch.from_numpy(pixels(files32[f"val/images/{name}"]))).flatten(1).all(1)
        assert hit.sum() == 1 and at32.test_y[hit].item() == SORTED.index(wnid)
    assert torch.equal(at32.train_y, at64.train_y) and torch.equal(at32.test_y, at64.test_y)
    assert len(list((data / tiny.CACHE_DIR).iterdir())) == 2  # one cache per size


def test_extracted_into_a_folder_of_the_same_name(tmp_path, files64):
    make_tree(tmp_path / tiny.FOLDER / tiny.FOLDER, files64)
    assert load(tmp_path).info["source"] == str(tmp_path / tiny.FOLDER / tiny.FOLDER)


# ---------------------------------------------------------------------- cache
def test_cache_is_used_on_the_second_load(tmp_path, files64, monkeypatch):
    data = make_zip(tmp_path / tiny.ZIP, files64).parent
    first = load(data)
    cache = Path(first.info["cache"])
    assert cache.parent == data / tiny.CACHE_DIR and cache.name.startswith("tinyimagenet-64px-")
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folders, "decode_image", no_decoding)
    again = load(data)
    assert_same(first, again)
    assert again.info["cache"] == str(cache)


def test_cache_is_rebuilt_when_the_annotations_change(tmp_path, files64):
    data = make_tree(tmp_path / tiny.FOLDER, files64).parent
    before = load(data)
    ann = data / tiny.FOLDER / tiny.ANNOTATIONS
    lines = ann.read_text().splitlines()
    a, b = lines[0].split("\t"), lines[1].split("\t")  # swap the labels of val_0 and val_1
    a[1], b[1] = b[1], a[1]
    ann.write_text("\n".join(["\t".join(a), "\t".join(b), *lines[2:]]) + "\n")
    after = load(data)
    assert after.info["cache"] != before.info["cache"]
    assert not torch.equal(after.test_y, before.test_y) or not torch.equal(after.test_x, before.test_x)


# ---------------------------------------------------------------------- benchmark and classes
def test_benchmark_keeps_the_first_classes_of_a_smaller_tree(tmp_path, files64):
    data = make_tree(tmp_path / tiny.FOLDER, files64).parent
    cfg = ExperimentConfig(dataset="tiny-imagenet", num_classes=2, num_tasks=2, image_size=64,
                           data_dir=str(data))
    split = load_benchmark(cfg)
    assert (cfg.dataset, cfg.num_classes_per_task) == ("tinyimagenet", 1)
    assert split.train_y.tolist() == [0] * 4 + [1] * 4 and split.test_y.tolist() == [0, 0, 1, 1]
    full = load(data)
    assert torch.equal(split.train_x, full.train_x[:8]) and torch.equal(split.test_x, full.test_x[:4])
    assert split.info["class_order"] == [0, 1] and split.info["dataset"] == "tinyimagenet"


def test_all_200_classes_are_needed_for_the_full_benchmark(tmp_path, files64):
    make_tree(tmp_path / tiny.FOLDER, files64)
    with pytest.raises(DataError, match=r"found 3 classes .* expected 200: Tiny ImageNet has 200") as err:
        tiny.load_tinyimagenet(tmp_path, 32, download=False, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"expected at least num_classes=5"):
        load(tmp_path, num_classes=5)


def test_the_full_tree_needs_500_and_50_per_class(tmp_path, files64, monkeypatch):
    """With the constants shrunk to the fake's size, the fake counts as the full benchmark."""
    monkeypatch.setattr(tiny, "CLASSES", 3)
    monkeypatch.setattr(tiny, "TRAIN_PER_CLASS", TRAIN)
    monkeypatch.setattr(tiny, "VAL_PER_CLASS", VAL)
    data = make_tree(tmp_path / tiny.FOLDER, files64).parent
    assert len(load(data, num_classes=3).train_y) == 12
    monkeypatch.setattr(tiny, "TRAIN_PER_CLASS", TRAIN + 1)
    with pytest.raises(DataError, match=rf"class {SORTED[0]} .* has 4 training images, expected 5 like every class"):
        load(data, num_classes=3)


def test_cldst_run_on_a_generated_tree(tmp_path, files32):
    import json

    from cldst.cli import main

    make_tree(tmp_path / tiny.FOLDER, files32)
    out = tmp_path / "run"
    argv = ["run", "--dataset", "tinyimagenet", "--data_dir", str(tmp_path), "--num_tasks", "2",
            "--num_classes", "2", "--width", "0.125", "--epochs", "1", "--batch_size", "2",
            "--update_frequency", "1", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["acc_matrix"]) == 2 and metrics["data"]["dataset"] == "tinyimagenet"


# ---------------------------------------------------------------------- malformed and missing
def _drop(files, *names):
    return {k: v for k, v in files.items() if k not in names}


def _edit_annotations(files, edit):
    lines = files[tiny.ANNOTATIONS].decode().splitlines()
    return {**files, tiny.ANNOTATIONS: ("\n".join(edit(lines)) + "\n").encode()}


def _relabel(lines, frm, to):
    return [line.replace(f"\t{frm}\t", f"\t{to}\t") for line in lines]


MALFORMED = {
    "no annotations": (lambda f: _drop(f, tiny.ANNOTATIONS), r"val/val_annotations\.txt is missing: the validation labels come from it"),
    "empty annotations": (lambda f: {**f, tiny.ANNOTATIONS: b"\n"}, r"val_annotations\.txt is empty"),
    "bad annotation line": (lambda f: _edit_annotations(f, lambda ls: [ls[0], "val_1.JPEG n01443537 0 0 1 1", *ls[2:]]),
                            r"line 2 of .*val_annotations\.txt is 'val_1\.JPEG n01443537 .*, not '<file>\.JPEG<TAB><wnid>"),
    "duplicate annotation": (lambda f: _edit_annotations(f, lambda ls: [*ls, ls[0]]), r"lists val_0\.JPEG twice \(lines 1 and 7\)"),
    "image without annotation": (lambda f: _edit_annotations(f, lambda ls: ls[1:]),
                                 r"val_annotations\.txt has no line for 1 image in .*val/images/ \(e\.g\. val_0\.JPEG\)"),
    "annotated image missing": (lambda f: _drop(f, "val/images/val_3.JPEG"), r"lists 1 image missing from .*\(e\.g\. val_3\.JPEG\)"),
    "unknown wnid": (lambda f: _edit_annotations(f, lambda ls: _relabel(ls, WNIDS[0], "n00000001")),
                     r"labels validation images with 1 wnid that has no train/<wnid>/images/ folder \(e\.g\. n00000001\)"),
    "class without val images": (lambda f: _edit_annotations(f, lambda ls: _relabel(ls, SORTED[1], SORTED[0])),
                                 rf"class {SORTED[1]} in .* has no validation images"),
    "missing train image": (lambda f: _drop(f, f"train/{SORTED[2]}/images/{SORTED[2]}_3.JPEG"),
                            rf"class {SORTED[2]} in .* has 3 training images, expected 4 like most others"),
    "no train images": (lambda f: {k: v for k, v in f.items() if not k.startswith("train/")},
                        r"has no training images in train/<wnid>/images/"),
    "undecodable image": (lambda f: {**f, "val/images/val_4.JPEG": b"\xff\xd8 not a JPEG"},
                          r"cannot decode 1 of 18 images .*val_4\.JPEG \(not an image"),
}


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_tree_gets_one_clear_line(tmp_path, files64, name, as_zip):
    change, message = MALFORMED[name]
    files = change(files64)
    if as_zip:
        make_zip(tmp_path / tiny.ZIP, files)
    else:
        make_tree(tmp_path / tiny.FOLDER, files)
    with pytest.raises(DataError, match=message) as err:
        load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    if name != "undecodable image":  # that one names the broken file instead
        assert tiny.URL in msg and str(tmp_path / tiny.FOLDER) in msg  # what to get, and where


def _corrupt_zip(d: Path, files) -> None:
    (d / tiny.ZIP).write_bytes(np.random.default_rng(1).bytes(3000))


def _zip_and_folder(d: Path, files) -> None:
    make_zip(d / tiny.ZIP, files)
    make_tree(d / tiny.FOLDER, files)


def _zip_without_tree(d: Path, files) -> None:
    make_zip(d / tiny.ZIP, {"readme.txt": b"hello"}, top="")


def _zip_with_two_trees(d: Path, files) -> None:
    with zipfile.ZipFile(d / tiny.ZIP, "w") as zf:
        for top in ("a/", "b/"):
            for rel, data in files.items():
                zf.writestr(f"{top}{rel}", data)


def _nothing(d: Path, files) -> None:
    (d / "cifar-100-python").mkdir()


SOURCES = {
    "corrupt zip": (_corrupt_zip, r"tiny-imagenet-200\.zip is not a readable zip .* delete it and download it again"),
    "zip and folder": (_zip_and_folder, r"found 2 Tiny ImageNet sources: .*\(zip\), .*\(folder\); keep exactly one"),
    "zip without tree": (_zip_without_tree, r"holds no Tiny ImageNet tree"),
    "zip with two trees": (_zip_with_two_trees, r"holds 2 Tiny ImageNet trees \(a/, b/\): keep one"),
    "nothing": (_nothing, r"no Tiny ImageNet in .*: download http://cs231n\.stanford\.edu/tiny-imagenet-200\.zip into"),
}


@pytest.mark.parametrize("name", SOURCES)
def test_bad_or_missing_source_gets_one_clear_line(tmp_path, files64, name):
    build, message = SOURCES[name]
    build(tmp_path, files64)
    with pytest.raises(DataError, match=message) as err:
        load(tmp_path)
    assert "\n" not in str(err.value)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match=r"data_dir .*nope does not exist: download http"):
        load(tmp_path / "nope")


def test_offline_download_says_what_to_get_and_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    with pytest.raises(DataError) as err:
        load(tmp_path / "data", download=True)
    msg = str(err.value)
    assert "\n" not in msg and "could not be downloaded (OSError)" in msg
    assert f"download {tiny.URL} into {tmp_path / 'data'}/" in msg
    assert not list((tmp_path / "data").iterdir())  # no partial file left


def test_download_lands_as_the_official_zip(tmp_path, files64, monkeypatch):
    calls = []

    def fake_download(url, root, filename, md5):
        calls.append((url, md5))
        make_zip(Path(root) / filename, files64)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    split = load(tmp_path / "data", download=True)
    assert calls == [(tiny.URL, tiny.MD5)] and len(split.train_y) == 12
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [tiny.ZIP, tiny.CACHE_DIR]
    load(tmp_path / "data", download=True)  # found now: not downloaded again
    assert len(calls) == 1


def test_miniimagenet_does_not_take_a_tiny_imagenet_tree(tmp_path, files64):
    make_tree(tmp_path / tiny.FOLDER, files64)
    with pytest.raises(DataError, match=r"no miniImageNet in"):
        mini.find_source(tmp_path)
    (tmp_path / "miniImageNet" / "n01532829").mkdir(parents=True)
    assert mini.find_source(tmp_path).path == tmp_path / "miniImageNet"


# ---------------------------------------------------------------------- config and presets
def test_config_defaults_aliases_and_image_size():
    cfg = ExperimentConfig(dataset="Tiny_ImageNet")
    assert (cfg.dataset, cfg.num_classes, cfg.num_tasks, cfg.num_classes_per_task) == ("tinyimagenet", 200, 10, 20)
    assert (cfg.arch, cfg.width, cfg.batch_size, cfg.epochs, cfg.density, cfg.update_frequency, cfg.image_size) == \
        ("resnet18", 1.0, 128, 100, 0.1, 50, 32)
    assert ExperimentConfig(dataset="tiny-imagenet-200", image_size=64).image_size == 64
    with pytest.raises(ConfigError, match=r"image_size=84 is not allowed: expected 32 or 64 for tinyimagenet"):
        ExperimentConfig(dataset="tinyimagenet", image_size=84)
    with pytest.raises(ConfigError, match=r"num_classes=300 is not allowed: expected at most 200"):
        ExperimentConfig(dataset="tinyimagenet", num_classes=300)


@pytest.mark.parametrize("name,classes,tasks", [("split-tinyimagenet-100", 100, 10),
                                                ("split-tinyimagenet-200", 200, 10)])
def test_presets(name, classes, tasks):
    cfg = ExperimentConfig.from_dict(load_preset(Path(__file__).parents[1] / "presets" / f"{name}.yaml"))
    assert (cfg.dataset, cfg.num_classes, cfg.num_tasks, cfg.num_classes_per_task) == \
        ("tinyimagenet", classes, tasks, classes // tasks)
    assert (cfg.arch, cfg.width, cfg.batch_size, cfg.epochs, cfg.density, cfg.update_frequency) == \
        ("resnet18", 1.0, 64, 100, 0.1, 100)
    assert (cfg.sparse_init, cfg.growth, cfg.image_size) == ("ERK", "momentum", 32)
