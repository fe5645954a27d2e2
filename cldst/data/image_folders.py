"""What the image-folder benchmarks (miniImageNet, Tiny ImageNet, CIFAR-10 as class folders) share.

A ``Source`` says where a benchmark's image files are (a folder, or a zip read in place) and lists
them with their labels. ``cached_images`` decodes every file once, in parallel processes, with
Pillow: converted to RGB and the whole image resized to s × s with the antialiased bilinear
filter (``RESIZE``). The uint8 result is cached in one file per source and size, under a key made
of the layout, the size and each file's name, size and mtime (zip: CRC), so a changed source is
rebuilt; older caches for the same size are deleted.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import multiprocessing
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from cldst.config.atomic_files import atomic_write

from .base import DataError

CACHE_FORMAT = 1
RESIZE = "PIL bilinear (antialiased), whole image to s×s"
WNID = re.compile(r"n\d{8}")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Source:
    """One benchmark's images found on disk: where they are and the files in class order."""

    layout: str  # how they are stored, e.g. "zip", "folder" or "split"; part of the cache key
    path: Path  # the zip file, or the folder the file names are relative to
    is_zip: bool
    files: list[str]  # zip member names, or paths relative to ``path``; sorted by (label, test?, name)
    labels: list[int]
    wnids: list[str]  # the class names (WordNet ids, or CIFAR-10's), in label order
    given_test: list[bool] | None  # whether each file is in the given test split; None: no split given
    test_part: str | None  # the folder of the given test split, e.g. "val" or "test"
    fingerprint: list[tuple]  # cheap per-file identity: (name, size, mtime or CRC)
    name: str  # the dataset, in progress bars

    def location(self) -> str:
        return f"{self.layout} layout at {self.path}"


# ---------------------------------------------------------------------- listing files
def is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def subdirs(folder: Path) -> list[Path]:
    """The folders in ``folder``, sorted, hidden ones left out; none if it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def image_files(folder: Path, prefix: str) -> Iterator[tuple[str, str, tuple]]:
    """(name, path relative to the source, fingerprint) of each image file in ``folder``, whose path
    relative to the source is ``prefix`` (ending in "/"). In directory order: callers sort."""
    with os.scandir(folder) as entries:
        for e in entries:
            if is_image(e.name) and e.is_file():
                rel, st = f"{prefix}{e.name}", e.stat()
                yield e.name, rel, (rel, st.st_size, st.st_mtime_ns)


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
        raise DataError(f"cannot decode {len(errors)} of {n} images in {source.location()}, e.g. "
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
    """Atomically (cldst/data/atomic.py). Older caches for the size go."""
    atomic_write(path, lambda f: torch.save(cache, f))
    for old in path.parent.glob(f"{path.name.rsplit('-', 1)[0]}-*.pt"):
        if old != path:
            old.unlink(missing_ok=True)


def _prepare(source: Source, size: int, key: str, workers: int | None, progress: bool) -> dict:
    images = decode_all(source, size, workers, progress)
    given = None if source.given_test is None else torch.tensor(source.given_test)
    return {"format": CACHE_FORMAT, "key": key, "layout": source.layout, "source": str(source.path),
            "images": images, "labels": torch.tensor(source.labels, dtype=torch.int64),
            "files": "\n".join(source.files), "wnids": source.wnids, "given_test": given}


def _say(message: str, progress: bool, prefix: str) -> None:
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
        _say(f"found {source.location()} ({len(source.wnids)} classes, {len(source.files)} "
             f"images); preparing {cache_path}", progress, prefix)
        cache = _prepare(source, image_size, key, workers, progress)
        try:
            _write_cache(cache_path, cache)
        except (OSError, RuntimeError) as e:
            _say(f"cannot write the cache {cache_path} ({e}); continuing without it", True, prefix)
    else:
        _say(f"found {source.location()}; loaded {cache_path}", progress, prefix)
    return cache, cache_path
