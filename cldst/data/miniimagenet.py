"""miniImageNet (100 classes × 600 images) from whichever common distribution is in ``data_dir``.

There is no official download. ``load_miniimagenet`` accepts exactly one of these under
``data_dir`` (a class folder is a WordNet-id folder such as ``n01532829`` holding the images):

``zip``
    ``data_dir/miniImageNet.zip`` or ``miniImageNet100.zip`` (any file directly in ``data_dir``
    whose name, ignoring case, ``-`` and ``_``, starts with ``miniimagenet`` and ends in
    ``.zip``) with the class folders at the top level or inside a folder (Kaggle has both),
    at full ImageNet size or 84×84. It is read in place, never extracted. A ``train/`` +
    ``val/`` tree inside the zip is also accepted and used as given (reported as ``split``).
``folder``
    The same, extracted: class folders directly in ``data_dir``, in a folder directly in
    ``data_dir`` (``data_dir/miniImageNet100/n01532829/``), or one level further down inside a
    folder named ``miniImageNet*`` (``data_dir/miniImageNet100/miniImageNet100/n01532829/``).
``split``
    A split tree, in any of the folders searched for ``folder``: ``train/<wnid>/`` plus
    ``val/<wnid>/`` or ``test/<wnid>/`` (500 + 100 images per class), used as given.

Image files are ``.jpg``, ``.jpeg`` or ``.png`` in any case; hidden files and ``__MACOSX/`` are
ignored. A zip next to its extracted copy counts as two sources: keep one, as they may differ.
Anything else (nothing found, two sources at once, an empty or corrupt zip, the wrong number of
classes or images, an image that does not decode) is one ``DataError`` saying what was found and
what is expected.

Preparation (``image_folders.cached_images``) runs once per source and image size: every image is decoded with Pillow, converted to
RGB and the whole image resized to ``image_size`` × ``image_size`` with Pillow's antialiased
bilinear filter, which is what torchvision's ``Resize((s, s))`` does to a PIL image. The result
is cached as uint8 in ``data_dir/miniimagenet-cache/`` under a key made of the layout, the size
and the file list with sizes and mtimes (zip: member names, sizes and CRCs), so a changed source
is rebuilt and older caches for that size are deleted. Classes are numbered in wnid order. Unless
the source is split, each class's test images, ``n / 6`` rounded half up of ``n`` (100 of 600), are
drawn by a ``torch.Generator`` shuffle seeded with ``seed``. The split is a function of the seed and
the file order, recomputed in milliseconds at each load, so one cache serves every seed; ``info``
records the seed and a hash of the test file list.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from .base import DataError, ImageSplit
from .image_folders import RESIZE, WNID, Source, cached_images, image_files, is_image, subdirs

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASSES = 100
IMAGES_PER_CLASS = 600
CACHE_DIR = "miniimagenet-cache"
TRAIN, TEST_PARTS = "train", ("val", "test")
PARTS = (TRAIN, *TEST_PARTS)
KIND_NAMES = {"zip": "zip", "folder": "WordNet-id folders", "split": "train/ split tree"}
EXPECTED = ("expected in data_dir exactly one of: miniImageNet.zip or miniImageNet100.zip holding "
            "WordNet-id folders of JPEGs (e.g. n01532829/), the same extracted (data_dir/<wnid>/ or "
            "data_dir/miniImageNet100/<wnid>/), or a split tree train/<wnid>/ + val/<wnid>/ (or test/)")


class _Item(NamedTuple):
    wnid: str
    part: str  # "" in a flat layout, else train, val or test
    name: str
    file: str  # zip member name, or path relative to the source folder
    fingerprint: tuple  # (file, size, mtime_ns or CRC)


# ---------------------------------------------------------------------- finding the source
def _named_miniimagenet(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "").startswith("miniimagenet")


def _holds_classes(folder: Path) -> bool:
    return any(WNID.fullmatch(d.name) for d in subdirs(folder))


def _is_tiny_imagenet(folder: Path) -> bool:
    """Tiny ImageNet's tree (tinyimagenet.py) also has train/<wnid>/: it is not a miniImageNet."""
    name = folder.name.lower().replace("-", "").replace("_", "")
    return name.startswith("tinyimagenet") or (folder / "val" / "val_annotations.txt").is_file()


def _is_plain(folder: Path) -> bool:
    """A folder that may hold a source: not a class folder, a split part, a cache or Tiny ImageNet."""
    return not (WNID.fullmatch(folder.name) or folder.name.lower() in PARTS
                or folder.name == CACHE_DIR or _is_tiny_imagenet(folder))


def _candidate_folders(data_dir: Path) -> list[Path]:
    folders = [data_dir]
    for child in filter(_is_plain, subdirs(data_dir)):
        folders.append(child)
        if _named_miniimagenet(child.name):
            folders.extend(filter(_is_plain, subdirs(child)))
    return folders


def _find_sources(data_dir: Path) -> list[tuple[str, Path]]:
    """Every (kind, path) that looks like miniImageNet: kind is "zip", "folder" or "split"."""
    found = [("zip", p) for p in sorted(data_dir.iterdir())
             if _named_miniimagenet(p.name) and p.name.lower().endswith(".zip") and p.is_file()]
    for folder in _candidate_folders(data_dir):
        if _holds_classes(folder):
            found.append(("folder", folder))
        if any(_holds_classes(folder / d.name) for d in subdirs(folder) if d.name.lower() == TRAIN):
            found.append(("split", folder))
    return found


def _split_part(parts: list[str]) -> str:
    """The train/val/test folder right above a class folder, or "" for a flat layout."""
    return parts[-1].lower() if parts and parts[-1].lower() in PARTS else ""


def _source_from_items(layout: str, path: Path, is_zip: bool, items: list[_Item]) -> Source:
    parts = sorted({it.part for it in items})
    if layout == "split":
        test_parts = [p for p in parts if p in TEST_PARTS]
        where = f"{path} (split layout)"
        if TRAIN not in parts or not test_parts:
            raise DataError(f"{where} has only {'/, '.join(parts)}/: a split tree needs train/ and "
                            f"val/ (or test/) holding the same WordNet-id folders")
        if len(test_parts) == 2:
            raise DataError(f"{where} has train/, val/ and test/ (a few-shot split with disjoint "
                            f"classes?): keep train/ + val/ or train/ + test/ with the same 100 "
                            f"classes, or merge all class folders into one folder")
        classes = {p: {it.wnid for it in items if it.part == p} for p in parts}
        if classes[TRAIN] != classes[test_parts[0]]:
            raise DataError(f"{where}: train/ has {len(classes[TRAIN])} class folders and "
                            f"{test_parts[0]}/ {len(classes[test_parts[0]])}, not the same ones; "
                            f"both must hold the same WordNet-id folders")
    items = sorted(items, key=lambda it: (it.wnid, it.part in TEST_PARTS, it.name))
    wnids = sorted({it.wnid for it in items})
    index = {w: i for i, w in enumerate(wnids)}
    return Source(
        layout=layout, path=path, is_zip=is_zip,
        files=[it.file for it in items],
        labels=[index[it.wnid] for it in items],
        wnids=wnids,
        given_test=[it.part in TEST_PARTS for it in items] if layout == "split" else None,
        test_part=next((p for p in parts if p in TEST_PARTS), None),
        fingerprint=[it.fingerprint for it in items], name="miniImageNet")


def _folder_source(kind: str, folder: Path) -> Source:
    split = kind == "split"
    part_dirs = [d for d in subdirs(folder) if d.name.lower() in PARTS] if split else [folder]
    items = []
    for part_dir in part_dirs:
        part, prefix = (part_dir.name.lower(), f"{part_dir.name}/") if split else ("", "")
        for class_dir in subdirs(part_dir):
            if not WNID.fullmatch(class_dir.name):
                continue
            items += [_Item(class_dir.name, part, name, rel, fp)
                      for name, rel, fp in image_files(class_dir, f"{prefix}{class_dir.name}/")]
    return _source_from_items(kind, folder, False, items)


def _zip_source(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable zip ({type(e).__name__}: {e}): download it again; "
                        f"{EXPECTED}") from None
    groups: dict[tuple[str, bool], list[_Item]] = {}
    for m in members:
        parts = m.filename.split("/")
        if len(parts) < 2 or parts[0] == "__MACOSX" or not is_image(parts[-1]) \
                or not WNID.fullmatch(parts[-2]):
            continue
        part = _split_part(parts[:-2])
        holder = "/".join(parts[:-3] if part else parts[:-2])
        item = _Item(parts[-2], part, parts[-1], m.filename, (m.filename, m.file_size, m.CRC))
        groups.setdefault((holder, bool(part)), []).append(item)
    if not groups:
        raise DataError(f"{path} holds no images in WordNet-id folders ({len(members)} files); "
                        f"{EXPECTED}")
    if len(groups) > 1:
        where = ", ".join(f"{h or '<top level>'}/ ({'split tree' if s else 'class folders'})"
                          for h, s in sorted(groups))
        raise DataError(f"{path} holds {len(groups)} sets of class folders: {where}; keep one")
    (_, split), items = next(iter(groups.items()))
    return _source_from_items("split" if split else "zip", path, True, items)


def find_source(data_dir: str | Path) -> Source:
    """Detect the one miniImageNet layout in ``data_dir`` and list its images, or raise DataError."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} does not exist; {EXPECTED}")
    found = _find_sources(data_dir)
    if not found:
        raise DataError(f"no miniImageNet in {data_dir} (no miniImageNet*.zip, no WordNet-id "
                        f"folders, no train/ tree); {EXPECTED}")
    if len(found) > 1:
        listed = ", ".join(f"{p} ({KIND_NAMES[kind]})" for kind, p in found)
        raise DataError(f"found {len(found)} miniImageNet sources, mixed layouts: {listed}; "
                        f"keep exactly one under {data_dir}")
    kind, path = found[0]
    return _zip_source(path) if kind == "zip" else _folder_source(kind, path)


def _check_counts(source: Source, expected_classes: int, images_per_class: int | None) -> None:
    where = source.location()
    if len(source.wnids) != expected_classes:
        raise DataError(f"found {len(source.wnids)} class folders in {where}, expected "
                        f"{expected_classes}: miniImageNet has {CLASSES} WordNet-id folders of "
                        f"{IMAGES_PER_CLASS} images")
    labels = torch.tensor(source.labels)
    counts = torch.bincount(labels, minlength=len(source.wnids)).tolist()
    if images_per_class is not None:
        wrong = [f"{w}: {n}" for w, n in zip(source.wnids, counts, strict=True) if n != images_per_class]
        if wrong:
            shown = ", ".join(wrong[:3]) + (", ..." if len(wrong) > 3 else "")
            raise DataError(f"{len(wrong)} of {len(counts)} classes in {where} do not have "
                            f"{images_per_class} images ({shown}): the download is incomplete or "
                            f"not miniImageNet")
    if source.given_test is not None:
        test = torch.bincount(labels[torch.tensor(source.given_test)], minlength=len(counts))
        empty = [w for w, n, t in zip(source.wnids, counts, test.tolist(), strict=True) if t == 0 or t == n]
        if empty:
            raise DataError(f"class {empty[0]} in {where} has no train or no {source.test_part} "
                            f"images: every class needs both")
    elif min(counts) < 3:
        raise DataError(f"class {source.wnids[counts.index(min(counts))]} in {where} has "
                        f"{min(counts)} images: every class needs at least 3 to split")


# ---------------------------------------------------------------------- split and entry point
def choose_test(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Bool mask of test images: n/6 rounded per class (100 of 600), by a shuffle seeded with seed."""
    gen = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(labels), dtype=torch.bool)
    by_class = torch.argsort(labels, stable=True).split(torch.bincount(labels).tolist())
    for idx in by_class:
        n_test = (len(idx) + 3) // 6  # round half up: 600 → 100, 3 → 1
        test[idx[torch.randperm(len(idx), generator=gen)[:n_test]]] = True
    return test


def load_miniimagenet(data_dir: str | Path, image_size: int = 32, seed: int = 0, *,
                      expected_classes: int = CLASSES, images_per_class: int | None = IMAGES_PER_CLASS,
                      workers: int | None = None, progress: bool = True) -> ImageSplit:
    """miniImageNet as uint8 tensors, 500 train / 100 test per class, prepared once and cached.

    ``expected_classes`` and ``images_per_class`` (None: any, at least 3) exist for tests with
    small fakes; the benchmark needs 100 classes of 600. ``workers`` defaults to every usable core.
    """
    if expected_classes < 2:
        raise ValueError(f"expected_classes={expected_classes}: need at least 2")
    data_dir = Path(data_dir)
    source = find_source(data_dir)
    _check_counts(source, expected_classes, images_per_class)
    cache, cache_path = cached_images(source, image_size, data_dir / CACHE_DIR, "miniimagenet",
                                      workers, progress)

    labels, images = cache["labels"], cache["images"]
    test = cache["given_test"] if cache["given_test"] is not None else choose_test(labels, seed)
    test_files = "\n".join(f for f, t in zip(source.files, test.tolist(), strict=True) if t)
    info = {"dataset": "miniimagenet", "layout": source.layout, "source": str(source.path),
            "cache": str(cache_path), "image_size": image_size, "resize": RESIZE,
            "classes": len(source.wnids), "train_images": int((~test).sum()),
            "test_images": int(test.sum()),
            "split": "seeded shuffle" if source.given_test is None else f"given ({source.test_part}/)",
            "split_seed": seed if source.given_test is None else None,
            "test_files_sha1": hashlib.sha1(test_files.encode()).hexdigest()[:16]}
    return ImageSplit(images[~test], labels[~test], images[test], labels[test], MEAN, STD,
                      hflip=True, info=info)


def load(cfg, progress: bool = False) -> ImageSplit:
    strict = {}
    # A smaller tree (a subset, or a smoke test) is accepted when the run uses fewer classes.
    if cfg.num_classes < CLASSES and len(find_source(cfg.data_dir).wnids) != CLASSES:
        strict = dict(expected_classes=cfg.num_classes, images_per_class=None)
    return load_miniimagenet(Path(cfg.data_dir), cfg.image_size, cfg.data_seed, progress=progress, **strict)
