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

Preparation runs once per source and image size: every image is decoded with Pillow, converted to
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

import concurrent.futures
import hashlib
import io
import multiprocessing
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .base import DataError, ImageSplit

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASSES = 100
IMAGES_PER_CLASS = 600
CACHE_DIR = "miniimagenet-cache"
CACHE_FORMAT = 1
RESIZE = "PIL bilinear (antialiased), whole image to s×s"

WNID = re.compile(r"n\d{8}")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
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


@dataclass
class Source:
    """One miniImageNet found on disk: where it is and its images in class order."""

    layout: str  # "zip", "folder" or "split"
    path: Path  # the zip file, or the folder holding the class folders or train/
    is_zip: bool
    files: list[str]  # zip member names, or paths relative to ``path``; sorted by (wnid, test?, name)
    labels: list[int]
    wnids: list[str]
    given_test: list[bool] | None  # split layout: whether each file is in val/ or test/
    test_part: str | None  # "val" or "test" for the split layout
    fingerprint: list[tuple]  # cheap per-file identity: (name, size, mtime or CRC)
    name: str = "miniImageNet"  # the dataset, in progress bars (other loaders reuse this class)

    def describe(self) -> str:
        return f"{self.layout} layout at {self.path}"


# ---------------------------------------------------------------------- finding the source
def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _named_miniimagenet(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "").startswith("miniimagenet")


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _holds_classes(folder: Path) -> bool:
    return any(WNID.fullmatch(d.name) for d in _subdirs(folder))


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
    for child in filter(_is_plain, _subdirs(data_dir)):
        folders.append(child)
        if _named_miniimagenet(child.name):
            folders.extend(filter(_is_plain, _subdirs(child)))
    return folders


def _find_sources(data_dir: Path) -> list[tuple[str, Path]]:
    """Every (kind, path) that looks like miniImageNet: kind is "zip", "folder" or "split"."""
    found = [("zip", p) for p in sorted(data_dir.iterdir())
             if _named_miniimagenet(p.name) and p.name.lower().endswith(".zip") and p.is_file()]
    for folder in _candidate_folders(data_dir):
        if _holds_classes(folder):
            found.append(("folder", folder))
        if any(_holds_classes(folder / d.name) for d in _subdirs(folder) if d.name.lower() == TRAIN):
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
        fingerprint=[it.fingerprint for it in items])


def _folder_source(kind: str, folder: Path) -> Source:
    split = kind == "split"
    part_dirs = [d for d in _subdirs(folder) if d.name.lower() in PARTS] if split else [folder]
    items = []
    for part_dir in part_dirs:
        part, prefix = (part_dir.name.lower(), f"{part_dir.name}/") if split else ("", "")
        for class_dir in _subdirs(part_dir):
            if not WNID.fullmatch(class_dir.name):
                continue
            with os.scandir(class_dir) as entries:
                for e in entries:
                    if _is_image(e.name) and e.is_file():
                        rel, st = f"{prefix}{class_dir.name}/{e.name}", e.stat()
                        items.append(_Item(class_dir.name, part, e.name, rel,
                                           (rel, st.st_size, st.st_mtime_ns)))
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
        if len(parts) < 2 or parts[0] == "__MACOSX" or not _is_image(parts[-1]) \
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
    where = source.describe()
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


# ---------------------------------------------------------------------- decoding
def decode_image(data: bytes, size: int) -> np.ndarray:
    """One encoded image → uint8 (3, size, size) RGB, the whole image resized (no crop)."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


class _Reader:
    def __init__(self, path: Path, is_zip: bool):
        self.path = path
        self.zip = zipfile.ZipFile(path) if is_zip else None

    def read(self, name: str) -> bytes:
        return self.zip.read(name) if self.zip else (self.path / name).read_bytes()

    def close(self) -> None:
        if self.zip:
            self.zip.close()


_READER: _Reader | None = None  # one per worker process: a ZipFile cannot cross processes


def _init_worker(path: Path, is_zip: bool) -> None:
    global _READER
    _READER = _Reader(path, is_zip)


def _decode_chunk(task: tuple[list[str], int]) -> tuple[np.ndarray, list[str]]:
    names, size = task
    out = np.zeros((len(names), 3, size, size), dtype=np.uint8)
    errors = []
    for i, name in enumerate(names):
        try:
            out[i] = decode_image(_READER.read(name), size)
        except Exception as e:  # any failure is reported with its file, in one DataError
            reason = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) \
                else f"{type(e).__name__}: {' '.join(str(e).split())}"
            errors.append(f"{name} ({reason})")
    return out, errors


def _map_chunks(source: Source, chunks: list[list[str]], size: int,
                workers: int) -> Iterator[tuple[np.ndarray, list[str]]]:
    tasks = [(c, size) for c in chunks]
    if workers <= 1 or len(chunks) <= 1:
        _init_worker(source.path, source.is_zip)
        try:
            yield from map(_decode_chunk, tasks)
        finally:
            _READER.close()
        return
    # fork: the workers need only Pillow and numpy, and start without re-importing torch
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                                initargs=(source.path, source.is_zip)) as pool:
        yield from pool.map(_decode_chunk, tasks)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_all(source: Source, size: int, workers: int | None = None,
               progress: bool = True) -> torch.Tensor:
    """All images of ``source`` as uint8 (N, 3, size, size), decoded in ``workers`` processes."""
    workers = workers or default_workers()
    n = len(source.files)
    step = max(1, min(256, -(-n // (4 * workers))))
    chunks = [source.files[i:i + step] for i in range(0, n, step)]
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    out, errors, start = images.numpy(), [], 0
    with tqdm(total=n, desc=f"{source.name}: decoding", unit="img", disable=not progress) as bar:
        for arr, errs in _map_chunks(source, chunks, size, workers):
            out[start:start + len(arr)] = arr
            start += len(arr)
            errors += errs
            bar.update(len(arr))
    if errors:
        raise DataError(f"cannot decode {len(errors)} of {n} images in {source.describe()}, e.g. "
                        f"{errors[0]}: replace or delete the broken files")
    return images


# ---------------------------------------------------------------------- cache
def cache_key(source: Source, size: int) -> str:
    text = repr((CACHE_FORMAT, source.layout, size, RESIZE, source.fingerprint))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _read_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        cache = torch.load(path, weights_only=True, mmap=True)
    except Exception:  # a damaged cache is rebuilt, not fatal
        return None
    ok = isinstance(cache, dict) and cache.get("format") == CACHE_FORMAT and cache.get("key") == key
    return cache if ok else None


def _write_cache(path: Path, cache: dict) -> None:
    """Atomic: a temp file in the same folder, then os.replace. Older caches for the size go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(cache, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for old in path.parent.glob(f"{path.name.rsplit('-', 1)[0]}-*.pt"):
        if old != path:
            old.unlink(missing_ok=True)


def _prepare(source: Source, size: int, key: str, workers: int | None, progress: bool) -> dict:
    images = decode_all(source, size, workers, progress)
    given = None if source.given_test is None else torch.tensor(source.given_test)
    return {"format": CACHE_FORMAT, "key": key, "layout": source.layout, "source": str(source.path),
            "images": images, "labels": torch.tensor(source.labels, dtype=torch.int64),
            "files": "\n".join(source.files), "wnids": source.wnids, "given_test": given}


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


def _say(message: str, progress: bool, prefix: str = "miniimagenet") -> None:
    if progress:
        print(f"{prefix}: {message}", file=sys.stderr)


def cached_images(source: Source, image_size: int, cache_dir: Path, prefix: str,
                  workers: int | None = None, progress: bool = True) -> tuple[dict, Path]:
    """The decoded images of ``source``: from ``cache_dir/<prefix>-<size>px-<key>.pt`` when its key
    matches, else decoded (in ``workers`` processes) and written there. Returns (cache, its path)."""
    key = cache_key(source, image_size)
    cache_path = cache_dir / f"{prefix}-{image_size}px-{key}.pt"
    cache = _read_cache(cache_path, key)
    if cache is None:
        _say(f"found {source.describe()} ({len(source.wnids)} classes, {len(source.files)} "
             f"images); preparing {cache_path}", progress, prefix)
        cache = _prepare(source, image_size, key, workers, progress)
        try:
            _write_cache(cache_path, cache)
        except (OSError, RuntimeError) as e:
            _say(f"cannot write the cache {cache_path} ({e}); continuing without it", True, prefix)
    else:
        _say(f"found {source.describe()}; loaded {cache_path}", progress, prefix)
    return cache, cache_path


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
