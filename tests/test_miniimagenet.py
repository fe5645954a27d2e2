"""miniImageNet loader on small fakes: 4 WordNet-id classes × 12 tiny images in each layout."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cldst.data import image_folders
from cldst.data import miniimagenet as mini
from cldst.data.base import DataError

WNIDS = ["n01532829", "n01558993", "n01704323", "n01749939"]
PER_CLASS = 12
SIZE = 8
Images = dict[str, dict[str, bytes]]  # wnid -> file name -> encoded bytes


def _encode(rng: np.random.Generator, index: int) -> tuple[str, bytes]:
    w, h = int(rng.integers(9, 40)), int(rng.integers(9, 40))
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(pixels)
    buf = io.BytesIO()
    if index == 0:
        im.save(buf, "PNG")
        return f"img{index:02d}.png", buf.getvalue()
    (im.convert("L") if index == 1 else im).save(buf, "JPEG")
    return f"img{index:02d}.{'JPEG' if index == 2 else 'jpg'}", buf.getvalue()


@pytest.fixture(scope="module")
def images() -> Images:
    rng = np.random.default_rng(0)
    return {w: dict(_encode(rng, i) for i in range(PER_CLASS)) for w in reversed(WNIDS)}


def make_folder(root: Path, images: Images) -> Path:
    for wnid, files in images.items():
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (root / wnid / name).write_bytes(data)
    return root


def make_zip(path: Path, images: Images, top: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for wnid, files in images.items():
            for name, data in files.items():
                zf.writestr(f"{top}{wnid}/{name}", data)
    return path


def make_split(root: Path, images: Images, test_files: set[str], test_part: str = "val") -> Path:
    for wnid, files in images.items():
        for name, data in files.items():
            part = test_part if f"{wnid}/{name}" in test_files else "train"
            (root / part / wnid).mkdir(parents=True, exist_ok=True)
            (root / part / wnid / name).write_bytes(data)
    return root


def load(data_dir: Path, seed: int = 0, **kw) -> mini.ImageSplit:
    kw = {"expected_classes": len(WNIDS), "images_per_class": PER_CLASS, "progress": False, **kw}
    return mini.load_miniimagenet(data_dir, SIZE, seed, **kw)


def seeded_test_files(data_dir: Path, seed: int = 0) -> set[str]:
    source = mini.find_source(data_dir)
    test = mini.choose_test(torch.tensor(source.labels), seed)
    return {f for f, t in zip(source.files, test.tolist(), strict=True) if t}


def assert_same(a: mini.ImageSplit, b: mini.ImageSplit) -> None:
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ---------------------------------------------------------------------- layouts
def test_every_layout_gives_the_same_tensors(tmp_path, images):
    folder = load(make_folder(tmp_path / "folder" / "miniImageNet100", images).parent)
    assert folder.info["layout"] == "folder"
    assert folder.train_x.shape == (40, 3, SIZE, SIZE) and folder.test_x.shape == (8, 3, SIZE, SIZE)
    assert folder.train_x.dtype == torch.uint8 and folder.train_y.dtype == torch.int64
    assert (folder.mean, folder.std, folder.hflip) == (mini.MEAN, mini.STD, True)

    loaded = {
        "flat folder": load(make_folder(tmp_path / "flat", images)),
        "nested folder": load(make_folder(tmp_path / "n" / "miniImageNet" / "mini", images).parents[1]),
        "zip, top level": load(make_zip(tmp_path / "z1" / "miniImageNet.zip", images).parent, workers=2),
        "zip, one down": load(make_zip(tmp_path / "z2" / "miniImageNet100.zip", images, "mini/").parent),
        "split": load(make_split(tmp_path / "split", images, seeded_test_files(tmp_path / "flat"))),
        "split, test/": load(make_split(tmp_path / "split2" / "mini", images,
                                        seeded_test_files(tmp_path / "flat"), "test").parent),
    }
    for split in loaded.values():
        assert_same(folder, split)
    assert loaded["zip, top level"].info["layout"] == "zip"
    assert loaded["split"].info["layout"] == "split" and loaded["split"].info["split_seed"] is None


def test_split_tree_inside_a_zip_is_used_as_given(tmp_path, images):
    reference = load(make_folder(tmp_path / "flat", images))
    tree = make_split(tmp_path / "tree", images, seeded_test_files(tmp_path / "flat"))
    (tmp_path / "z").mkdir()
    with zipfile.ZipFile(tmp_path / "z" / "miniImageNet.zip", "w") as zf:
        for f in sorted(tree.rglob("*")):
            if f.is_file():
                zf.write(f, f"mini/{f.relative_to(tree).as_posix()}")
    split = load(tmp_path / "z")
    assert split.info["layout"] == "split" and split.info["source"].endswith(".zip")
    assert_same(reference, split)


def test_pixels_are_the_whole_image_resized_like_torchvision(tmp_path, images):
    from torchvision.transforms import InterpolationMode, Resize

    split = load(make_folder(tmp_path, images), seed=3)
    first = min(images[WNIDS[0]])
    with Image.open(io.BytesIO(images[WNIDS[0]][first])) as im:
        want = Resize((SIZE, SIZE), InterpolationMode.BILINEAR)(im.convert("RGB"))
    want = torch.from_numpy(np.asarray(want).transpose(2, 0, 1).copy())
    got = torch.cat([split.train_x, split.test_x])[torch.cat([split.train_y, split.test_y]) == 0]
    assert any(torch.equal(want, x) for x in got)


def test_workers_do_not_change_the_result(tmp_path, images):
    data = make_zip(tmp_path / "a" / "miniImageNet.zip", images).parent
    one = load(data, workers=1)
    for f in (data / mini.CACHE_DIR).iterdir():
        f.unlink()
    assert_same(one, load(data, workers=2))


# ---------------------------------------------------------------------- split
def test_split_is_one_sixth_per_class_and_seeded(tmp_path, images):
    data = make_folder(tmp_path, images)
    a, b, c = load(data, seed=0), load(data, seed=0), load(data, seed=1)
    assert torch.bincount(a.train_y).tolist() == [10] * 4
    assert torch.bincount(a.test_y).tolist() == [2] * 4
    assert_same(a, b)
    assert a.info["split_seed"] == 0 and a.info["test_files_sha1"] != c.info["test_files_sha1"]
    assert not torch.equal(a.test_x, c.test_x)
    assert torch.equal(torch.cat([a.train_x, a.test_x]).sum(0), torch.cat([c.train_x, c.test_x]).sum(0))


def test_choose_test_takes_round_n_over_6():
    labels = torch.arange(3).repeat_interleave(torch.tensor([600, 3, 7]))
    test = mini.choose_test(labels, 0)
    assert torch.bincount(labels[test]).tolist() == [100, 1, 1]
    assert torch.equal(test, mini.choose_test(labels, 0))


# ---------------------------------------------------------------------- cache
def test_cache_is_reused_without_decoding(tmp_path, images, monkeypatch):
    data = make_zip(tmp_path / "miniImageNet.zip", images).parent
    first = load(data)
    cache = Path(first.info["cache"])
    assert cache.is_file() and cache.parent == data / mini.CACHE_DIR
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temp file left

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folders, "decode_image", no_decoding)
    again = load(data, workers=1)
    assert_same(first, again)
    assert again.info["cache"] == str(cache)


def _add(root: Path) -> None:
    (root / WNIDS[0] / "extra.jpg").write_bytes((root / WNIDS[0] / "img05.jpg").read_bytes())


def _remove(root: Path) -> None:
    (root / WNIDS[1] / "img05.jpg").unlink()


def _touch(root: Path) -> None:
    path = root / WNIDS[2] / "img05.jpg"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))


@pytest.mark.parametrize("change,images_after", [(_add, 49), (_remove, 47), (_touch, 48)])
def test_cache_is_rebuilt_when_the_source_changes(tmp_path, images, change, images_after):
    data = make_folder(tmp_path, images)
    before = load(data, images_per_class=None)
    change(data)
    after = load(data, images_per_class=None)
    assert after.info["cache"] != before.info["cache"]
    assert not Path(before.info["cache"]).exists() and Path(after.info["cache"]).is_file()
    assert len(after.train_x) + len(after.test_x) == images_after


def test_cache_is_rebuilt_when_the_zip_changes(tmp_path, images):
    data = make_zip(tmp_path / "miniImageNet.zip", images).parent
    before = load(data)
    changed = {w: dict(files) for w, files in images.items()}
    changed[WNIDS[0]]["img03.jpg"] = images[WNIDS[0]]["img04.jpg"]
    make_zip(data / "miniImageNet.zip", changed)
    after = load(data)
    assert after.info["cache"] != before.info["cache"]
    assert not torch.equal(torch.cat([before.train_x, before.test_x]).sum(0),
                           torch.cat([after.train_x, after.test_x]).sum(0))


def test_a_damaged_cache_is_rebuilt(tmp_path, images):
    data = make_folder(tmp_path, images)
    first = load(data)
    Path(first.info["cache"]).write_bytes(b"not a cache")
    assert_same(first, load(data))


# ---------------------------------------------------------------------- malformed inputs
def _empty_zip(d: Path, images: Images) -> None:
    zipfile.ZipFile(d / "miniImageNet.zip", "w").close()


def _corrupt_zip(d: Path, images: Images) -> None:
    (d / "miniImageNet100.zip").write_bytes(np.random.default_rng(1).bytes(2000))


def _three_classes(d: Path, images: Images) -> None:
    make_folder(d / "miniImageNet", {w: images[w] for w in WNIDS[:3]})


def _unreadable_image(d: Path, images: Images) -> None:
    make_folder(d, images)
    (d / WNIDS[0] / "img07.jpg").write_bytes(b"\xff\xd8 garbage, not a JPEG")


def _missing_image(d: Path, images: Images) -> None:
    make_folder(d, images)
    (d / WNIDS[3] / "img07.jpg").unlink()


def _zip_and_split_tree(d: Path, images: Images) -> None:
    make_zip(d / "miniImageNet.zip", images)
    make_split(d, images, set())


def _folders_and_split_tree(d: Path, images: Images) -> None:
    make_folder(d, images)
    make_split(d, images, {f"{WNIDS[0]}/img00.png"})


def _zip_and_folder(d: Path, images: Images) -> None:
    make_zip(d / "miniImageNet100.zip", images)
    make_folder(d / "miniImageNet100", images)


def _two_sets_in_zip(d: Path, images: Images) -> None:
    with zipfile.ZipFile(d / "miniImageNet.zip", "w") as zf:
        for top in ("a/", "b/"):
            for wnid, files in images.items():
                for name, data in files.items():
                    zf.writestr(f"{top}{wnid}/{name}", data)


def _train_only(d: Path, images: Images) -> None:
    make_folder(d / "train", images)


def _split_classes_differ(d: Path, images: Images) -> None:
    make_folder(d / "train", images)
    make_folder(d / "val", {w: images[w] for w in WNIDS[:3]})


def _few_shot_split(d: Path, images: Images) -> None:
    make_folder(d / "train", {w: images[w] for w in WNIDS[:2]})
    make_folder(d / "val", {WNIDS[2]: images[WNIDS[2]]})
    make_folder(d / "test", {WNIDS[3]: images[WNIDS[3]]})


def _nothing(d: Path, images: Images) -> None:
    (d / "cifar-100-python").mkdir()


MALFORMED = {
    "empty zip": (_empty_zip, r"holds no images in WordNet-id folders"),
    "corrupt zip": (_corrupt_zip, r"miniImageNet100\.zip is not a readable zip"),
    "wrong class count": (_three_classes, r"found 3 class folders in .* expected 4"),
    "unreadable image": (_unreadable_image, r"cannot decode 1 of 48 .*img07\.jpg \(not an image"),
    "wrong image count": (_missing_image, r"1 of 4 classes .* do not have 12 images \(n01749939: 11\)"),
    "zip and split tree": (_zip_and_split_tree, r"found 2 miniImageNet sources, mixed layouts"),
    "folders and split tree": (_folders_and_split_tree, r"mixed layouts: .*\(WordNet-id folders\), .*\(train/"),
    "zip and folder": (_zip_and_folder, r"found 2 miniImageNet sources, mixed layouts"),
    "two sets in a zip": (_two_sets_in_zip, r"holds 2 sets of class folders: a/ .*, b/"),
    "train only": (_train_only, r"has only train/: a split tree needs train/ and val/"),
    "split classes differ": (_split_classes_differ, r"train/ has 4 class folders and val/ 3"),
    "few-shot split": (_few_shot_split, r"has train/, val/ and test/ \(a few-shot split"),
    "nothing": (_nothing, r"no miniImageNet in .* expected in data_dir exactly one of"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_input_gets_one_clear_message(tmp_path, images, name):
    build, message = MALFORMED[name]
    build(tmp_path, images)
    with pytest.raises(DataError, match=message) as err:
        load(tmp_path)
    assert "\n" not in str(err.value)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match=r"does not exist"):
        load(tmp_path / "nope")


def test_needs_at_least_two_classes(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        load(tmp_path, expected_classes=1)


def test_benchmark_defaults_reject_a_small_fake(tmp_path, images):
    make_folder(tmp_path, images)
    with pytest.raises(DataError, match=r"found 4 class folders .* expected 100"):
        mini.load_miniimagenet(tmp_path, SIZE, 0, progress=False)


def test_preset_is_a_valid_config():
    from cldst.config import ExperimentConfig, load_preset

    values = load_preset(Path(__file__).parents[1] / "presets" / "miniimagenet-10task.yaml")
    cfg = ExperimentConfig.from_dict(values)
    assert (cfg.dataset, cfg.num_tasks, cfg.num_classes, cfg.num_classes_per_task) == (
        "miniimagenet", 10, 100, 10)
    assert (cfg.arch, cfg.batch_size, cfg.update_frequency, cfg.density, cfg.epochs, cfg.image_size) == (
        "resnet18", 128, 50, 0.1, 100, 32)
    assert (cfg.sparse_init, cfg.growth) == ("ERK", "momentum")


@pytest.mark.slow
def test_cldst_run_on_a_generated_10_class_tree(tmp_path):
    """A split-mnist-sized smoke run of `cldst run --dataset miniimagenet` on 10 wnid folders."""
    import json

    from cldst.cli import main

    rng = np.random.default_rng(1)
    tree = {f"n0{1000000 + i}": dict(_encode(rng, 3 + k) for k in range(12)) for i in range(10)}
    make_folder(tmp_path / "miniImageNet", tree)
    out = tmp_path / "run"
    argv = ["run", "--dataset", "miniimagenet", "--data_dir", str(tmp_path), "--num_tasks", "2",
            "--num_classes", "10", "--image_size", "16", "--width", "0.125", "--epochs", "1",
            "--batch_size", "16", "--update_frequency", "2", "--device", "cpu", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["acc_matrix"]) == 2 and metrics["data"]["layout"] == "folder"
