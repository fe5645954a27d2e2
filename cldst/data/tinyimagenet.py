"""Tiny ImageNet (200 classes; 500 training and 50 validation images per class; 64 px).

``load_tinyimagenet`` accepts exactly one of these under ``data_dir``, all in the official layout::

    tiny-imagenet-200/
        train/<wnid>/images/<wnid>_<i>.JPEG      (500 per class; <wnid>_boxes.txt is ignored)
        val/images/val_<i>.JPEG                  (10,000 images, 50 per class)
        val/val_annotations.txt                  (tab separated: file, wnid, x0, y0, x1, y1)
        test/images/test_<i>.JPEG                (no labels: ignored)
        wnids.txt, words.txt                     (ignored)

``zip``
    The official ``tiny-imagenet-200.zip`` (any zip directly in ``data_dir`` whose name, ignoring
    case, ``-`` and ``_``, starts with ``tinyimagenet``), holding the tree at its top level or in
    one folder. It is read in place, never extracted. When no source is found it is downloaded
    from ``URL`` into ``data_dir``.
``folder``
    The tree, extracted: ``data_dir/tiny-imagenet-200/`` (a folder directly in ``data_dir`` named
    ``tiny-imagenet*`` or holding ``val/val_annotations.txt``, or one level further down inside a
    folder named ``tiny-imagenet*``), or ``data_dir`` itself.

The images may be at another resolution than 64 px (copies at 32 px are common): each image is
decoded with Pillow, converted to RGB and resized to ``image_size`` × ``image_size`` exactly as
miniImageNet's (``image_folders.decode_image``; an image already at that size is kept as is). The
test split has no labels, so the validation split is the test set: its labels are taken from
``val/val_annotations.txt``, never from the folder order. Classes are numbered in sorted wnid
order. The uint8 images are cached in ``data_dir/tinyimagenet-cache/`` under a key made of the
size and the file list with sizes and mtimes (zip: CRCs), annotation file included, so later
loads take about a second and a changed source is rebuilt.

Anything else (nothing found, two sources, a corrupt zip, a missing or malformed annotation file,
images and annotations that disagree, classes with different image counts, the wrong number of
classes, an image that does not decode) is one ``DataError`` saying what was found and expected.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from .base import DataError, ImageSplit
from .image_folders import RESIZE, WNID, Source, cached_images, image_files, is_image, subdirs

MEAN = (0.485, 0.456, 0.406)  # ImageNet's
STD = (0.229, 0.224, 0.225)
CLASSES = 200
TRAIN_PER_CLASS, VAL_PER_CLASS = 500, 50
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ZIP = "tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
ANNOTATIONS = "val/val_annotations.txt"
CACHE_DIR = "tinyimagenet-cache"


def _get(data_dir: Path) -> str:
    """What to download and where to put it."""
    return (f"download {URL} into {data_dir}/ (it is read in place) or extract it there, so that "
            f"{data_dir / FOLDER}/train/<wnid>/images/ and {data_dir / FOLDER}/{ANNOTATIONS} exist")


def _named_tiny(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "").startswith("tinyimagenet")


def _is_tree(folder: Path) -> bool:
    return (folder / "train").is_dir() or (folder / "val").is_dir()


def _find_sources(data_dir: Path) -> list[tuple[str, Path]]:
    """Every ("zip" | "folder", path) that looks like Tiny ImageNet."""
    found = [("zip", p) for p in sorted(data_dir.iterdir())
             if _named_tiny(p.name) and p.name.lower().endswith(".zip") and p.is_file()]
    if (data_dir / ANNOTATIONS).is_file():
        found.append(("folder", data_dir))
    for child in subdirs(data_dir):
        if _is_tree(child) and (_named_tiny(child.name) or (child / ANNOTATIONS).is_file()):
            found.append(("folder", child))
        elif _named_tiny(child.name):  # extracted into a folder of the same name
            found += [("folder", g) for g in subdirs(child) if _is_tree(g)]
    return found


def _count(things: list, noun: str) -> str:
    return f"{len(things)} {noun}{'' if len(things) == 1 else 's'}"


def _parse_annotations(text: str, where: str, get: str) -> dict[str, str]:
    """val_annotations.txt → {file name: wnid}."""
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not is_image(fields[0]) or not WNID.fullmatch(fields[1]):
            raise DataError(f"line {number} of {where} is {line.strip()[:60]!r}, not "
                            f"'<file>.JPEG<TAB><wnid>[<TAB>bbox...]': the file is damaged; {get}")
        if fields[0] in labels:
            raise DataError(f"{where} lists {fields[0]} twice (lines {lines[fields[0]]} and {number}): "
                            f"the file is damaged; {get}")
        labels[fields[0]], lines[fields[0]] = fields[1], number
    if not labels:
        raise DataError(f"{where} is empty: it must give the label of every image in val/images/; {get}")
    return labels


def _build(layout: str, path: Path, is_zip: bool, prefix: str, train: list[tuple[str, str, tuple]],
           val: list[tuple[str, tuple]], annotations: str | None, annotations_id: tuple,
           num_classes: int, data_dir: Path) -> Source:
    """train: (wnid, file, fingerprint); val: (file, fingerprint); file relative to ``path``."""
    where = str(path)

    def at(rel: str) -> str:  # a file of the tree, for messages
        return f"{path}:{prefix}{rel}" if is_zip else f"{path}/{rel}"

    get = _get(data_dir)
    wnids = sorted({w for w, _, _ in train})
    if not wnids:
        raise DataError(f"{where} has no training images in train/<wnid>/images/: {get}")
    if annotations is None:
        raise DataError(f"{at(ANNOTATIONS)} is missing: the validation labels come from it; {get}")
    labels = _parse_annotations(annotations, at(ANNOTATIONS), get)
    names = {f.rsplit("/", 1)[1] for f, _ in val}
    unlabelled = sorted(names - set(labels))
    if unlabelled:
        raise DataError(f"{at(ANNOTATIONS)} has no line for {_count(unlabelled, 'image')} in "
                        f"{at('val/images/')} (e.g. {unlabelled[0]}): the copy is damaged; {get}")
    missing = sorted(set(labels) - names)
    if missing:
        raise DataError(f"{at(ANNOTATIONS)} lists {_count(missing, 'image')} missing from "
                        f"{at('val/images/')} (e.g. {missing[0]}): the copy is incomplete; {get}")
    unknown = sorted(set(labels.values()) - set(wnids))
    if unknown:
        raise DataError(f"{at(ANNOTATIONS)} labels validation images with {_count(unknown, 'wnid')} "
                        f"that {'has' if len(unknown) == 1 else 'have'} no train/<wnid>/images/ folder (e.g. {unknown[0]}): the copy is "
                        f"incomplete; {get}")
    index = {w: i for i, w in enumerate(wnids)}
    items = [(w, False, f, fp) for w, f, fp in train]
    items += [(labels[f.rsplit("/", 1)[1]], True, f, fp) for f, fp in val]
    items.sort(key=lambda it: (it[0], it[1], it[2]))
    source = Source(layout=layout, path=path, is_zip=is_zip, files=[it[2] for it in items],
                    labels=[index[it[0]] for it in items], wnids=wnids,
                    given_test=[it[1] for it in items], test_part="val",
                    fingerprint=[it[3] for it in items] + [annotations_id], name="Tiny ImageNet")
    _check_counts(source, where, num_classes, get)
    return source


def _check_counts(source: Source, where: str, num_classes: int, get: str) -> None:
    """All 200 classes of 500 + 50 images; for a run of fewer classes, a tree of at least that
    many classes (a subset, or a test's fake) with as many images in each class."""
    found = len(source.wnids)
    if found != CLASSES and (num_classes >= CLASSES or found < num_classes):
        need = f"{CLASSES}" if num_classes >= CLASSES else f"at least num_classes={num_classes}"
        raise DataError(f"found {found} classes (train/<wnid>/ folders) in {where}, expected {need}: "
                        f"Tiny ImageNet has {CLASSES} of {TRAIN_PER_CLASS} training and "
                        f"{VAL_PER_CLASS} validation images; {get}")
    labels, test = torch.tensor(source.labels), torch.tensor(source.given_test)
    for part, sel, full in (("training", ~test, TRAIN_PER_CLASS), ("validation", test, VAL_PER_CLASS)):
        counts = torch.bincount(labels[sel], minlength=found).tolist()
        common = full if found == CLASSES else max(set(counts), key=counts.count)
        if min(counts) == 0:
            odd, what = counts.index(0), f"no {part} images"
        elif min(counts) != max(counts) or counts[0] != common:
            odd = next(c for c in range(found) if counts[c] != common)
            what = f"{counts[odd]} {part} images, expected {common} like " + \
                ("every class" if found == CLASSES else "most others")
        else:
            continue
        raise DataError(f"class {source.wnids[odd]} in {where} has {what}: the copy is incomplete "
                        f"or damaged; {get}")


def _folder_source(folder: Path, num_classes: int, data_dir: Path) -> Source:
    train = []
    for class_dir in subdirs(folder / "train"):
        images = class_dir / "images"
        if not WNID.fullmatch(class_dir.name) or not images.is_dir():
            continue
        train += [(class_dir.name, rel, fp)
                  for _, rel, fp in image_files(images, f"train/{class_dir.name}/images/")]
    val = []
    if (folder / "val" / "images").is_dir():
        val = [(rel, fp) for _, rel, fp in image_files(folder / "val" / "images", "val/images/")]
    ann_path = folder / ANNOTATIONS
    annotations, ann_id = None, (ANNOTATIONS,)
    if ann_path.is_file():
        st = ann_path.stat()
        annotations, ann_id = ann_path.read_text(errors="replace"), (ANNOTATIONS, st.st_size, st.st_mtime_ns)
    return _build("folder", folder, False, "", train, val, annotations, ann_id, num_classes, data_dir)


def _zip_source(path: Path, num_classes: int, data_dir: Path) -> Source:
    get = _get(data_dir)

    def tree_root(name: str, marker: str) -> str | None:
        """The folder of the tree (``""`` or ``"x/"``) if ``name`` is ``<root><marker>...``."""
        root = name.split(marker, 1)[0] if marker in name else None
        return root if root is not None and (root == "" or (root.endswith("/") and root.count("/") == 1)) \
            else None

    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
            roots = sorted({r for m in members if m.filename.endswith(ANNOTATIONS)
                            and (r := tree_root(m.filename, ANNOTATIONS)) is not None})
            if not roots:  # no annotations: find the tree by its training images
                roots = sorted({r for m in members if (r := tree_root(m.filename, "train/")) is not None})
            if len(roots) > 1:
                raise DataError(f"{path} holds {len(roots)} Tiny ImageNet trees "
                                f"({', '.join(r or '<top level>' for r in roots)}): keep one")
            if not roots:
                raise DataError(f"{path} holds no Tiny ImageNet tree (no train/ or {ANNOTATIONS} at "
                                f"its top level or in one folder; {len(members)} files): {get}")
            root = roots[0]
            annotations = ann_id = None
            train, val = [], []
            for m in members:
                if not m.filename.startswith(root):
                    continue
                rel = m.filename[len(root):]
                parts = rel.split("/")
                fp = (m.filename, m.file_size, m.CRC)
                if rel == ANNOTATIONS:
                    annotations = zf.read(m).decode(errors="replace")
                    ann_id = fp
                elif len(parts) == 4 and parts[0] == "train" and parts[2] == "images" \
                        and WNID.fullmatch(parts[1]) and is_image(parts[3]):
                    train.append((parts[1], m.filename, fp))
                elif len(parts) == 3 and parts[:2] == ["val", "images"] and is_image(parts[2]):
                    val.append((m.filename, fp))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path} is not a readable zip ({type(e).__name__}: {e}): delete it and "
                        f"download it again; {get}") from None
    return _build("zip", path, True, root, train, val, annotations, ann_id or (ANNOTATIONS,),
                  num_classes, data_dir)


def find_source(data_dir: str | Path, num_classes: int = CLASSES) -> Source:
    """Detect the one Tiny ImageNet in ``data_dir``, list and check its images, or raise DataError."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} does not exist: {_get(data_dir)}")
    found = _find_sources(data_dir)
    if not found:
        raise DataError(f"no Tiny ImageNet in {data_dir} (no tiny-imagenet*.zip, no folder holding "
                        f"train/ and {ANNOTATIONS}): {_get(data_dir)}")
    if len(found) > 1:
        listed = ", ".join(f"{p} ({kind})" for kind, p in found)
        raise DataError(f"found {len(found)} Tiny ImageNet sources: {listed}; keep exactly one "
                        f"under {data_dir} (a zip next to its extracted copy counts twice)")
    kind, path = found[0]
    if kind == "zip":
        return _zip_source(path, num_classes, data_dir)
    return _folder_source(path, num_classes, data_dir)


def _download(data_dir: Path) -> None:
    """Fetch the official zip into ``data_dir`` (checked against its MD5), atomically."""
    from torchvision.datasets.utils import download_url

    data_dir.mkdir(parents=True, exist_ok=True)
    part = data_dir / f"{ZIP}.part"
    try:
        download_url(URL, str(data_dir), filename=part.name, md5=MD5)
        os.replace(part, data_dir / ZIP)
    except Exception as e:
        raise DataError(f"Tiny ImageNet is not in {data_dir} and could not be downloaded "
                        f"({type(e).__name__}): {_get(data_dir)}") from e
    finally:
        part.unlink(missing_ok=True)


def load_tinyimagenet(data_dir: str | Path, image_size: int = 32, *, num_classes: int = CLASSES,
                      download: bool = True, workers: int | None = None,
                      progress: bool = True) -> ImageSplit:
    """Tiny ImageNet as uint8 tensors: train/ for training, val/ (labelled) as the test set.

    The tree must hold all 200 classes, unless ``num_classes`` (the classes the run keeps) is
    smaller: then a tree with at least that many (a subset, or a test's fake) is accepted.
    """
    data_dir = Path(data_dir)
    if download and not (data_dir.is_dir() and _find_sources(data_dir)):
        _download(data_dir)
    source = find_source(data_dir, num_classes)
    cache, cache_path = cached_images(source, image_size, data_dir / CACHE_DIR, "tinyimagenet",
                                      workers, progress)
    labels, images, test = cache["labels"], cache["images"], cache["given_test"]
    info = {"dataset": "tinyimagenet", "layout": source.layout, "source": str(source.path),
            "cache": str(cache_path), "image_size": image_size, "resize": RESIZE,
            "classes": len(source.wnids), "train_images": int((~test).sum()),
            "test_images": int(test.sum()),
            "split": f"given: train/ for training, val/ (labels from {ANNOTATIONS}) for testing"}
    return ImageSplit(images[~test], labels[~test], images[test], labels[test], MEAN, STD,
                      hflip=True, info=info)


def load(cfg, progress: bool = False) -> ImageSplit:
    # All 200 classes are checked; a smaller tree is accepted when the run uses fewer classes.
    return load_tinyimagenet(Path(cfg.data_dir), cfg.image_size, num_classes=cfg.num_classes, progress=progress)
