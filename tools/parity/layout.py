"""Lay out Tiny ImageNet as the class-folder tree the original's ``miniImageNet100.py`` reads.

The original reads ``data/miniImageNet100/train/<class>/*`` and ``.../validation/<class>/*`` and
numbers the classes by the *unsorted* ``os.listdir`` order of each split folder (separately for
train/ and validation/). cldst's ``tinyimagenet`` numbers them in sorted wnid order and keeps the
first ``num_classes``. So the folders get neutral names, ``os.listdir`` is read back, and the folder
at listdir position i receives the images of sorted wnid i: class i is then the same class in both
implementations and both splits. Images are hard-linked (else symlinked, else copied), keeping
their file names: the original finds an image's folder by its name, so names must be unique.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MARKER = ".parity-layout.json"
SPLITS = ("train", "validation")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
ANNOTATIONS = Path("val") / "val_annotations.txt"


class LayoutError(RuntimeError):
    """One line saying what is wrong and where."""


@dataclass
class Layout:
    root: Path
    wnids: list[str]  # class i of both implementations is wnids[i]
    folders: dict[str, list[str]]  # split -> folder names in os.listdir order (position i = class i)
    method: str  # hardlink, symlink or copy
    reused: bool = False

    def folder_of(self, split: str, class_id: int) -> Path:
        return self.root / split / self.folders[split][class_id]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def source_images(tiny: Path, num_classes: int) -> tuple[list[str], dict[str, dict[str, list[Path]]]]:
    """The first ``num_classes`` sorted wnids and {split: {wnid: sorted image paths}} of a Tiny
    ImageNet tree in the official layout (train/<wnid>/images/, val/images/ + val_annotations.txt)."""
    train_dir, ann = tiny / "train", tiny / ANNOTATIONS
    if not train_dir.is_dir() or not ann.is_file():
        raise LayoutError(f"{tiny} is not a Tiny ImageNet tree in the official layout: it needs "
                          f"train/<wnid>/images/ and {ANNOTATIONS}")
    all_wnids = sorted(p.name for p in train_dir.iterdir() if (p / "images").is_dir())
    if len(all_wnids) < num_classes:
        raise LayoutError(f"{train_dir} has {len(all_wnids)} class folders, fewer than --classes {num_classes}")
    wnids = all_wnids[:num_classes]
    images: dict[str, dict[str, list[Path]]] = {"train": {}, "validation": {w: [] for w in wnids}}
    for w in wnids:
        images["train"][w] = sorted(p for p in (train_dir / w / "images").iterdir() if _is_image(p.name))
    for number, line in enumerate(ann.read_text().splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2:
            raise LayoutError(f"line {number} of {ann} is {line[:60]!r}, not '<file><TAB><wnid>...'")
        if fields[1] in images["validation"]:
            images["validation"][fields[1]].append(tiny / "val" / "images" / fields[0])
    for split, per_class in images.items():
        for w, files in per_class.items():
            if not files:
                raise LayoutError(f"class {w} has no {split} images in {tiny}")
            per_class[w] = sorted(files)
            missing = next((f for f in files if not f.is_file()), None)
            if missing is not None:
                raise LayoutError(f"{missing} is missing (listed for class {w} in {tiny})")
    return wnids, images


def _check_unique_names(split: str, per_class: dict[str, list[Path]]) -> None:
    seen: dict[str, str] = {}
    for w, files in per_class.items():
        for f in files:
            if f.name in seen:
                raise LayoutError(f"{split} image name {f.name} is in classes {seen[f.name]} and {w}: the "
                                  "original finds an image's folder by its name and would mislabel it")
            seen[f.name] = w


def _place(src: Path, dst: Path, method: str) -> str:
    """Put ``src`` at ``dst`` by ``method`` ("auto": the first of hardlink, symlink, copy that works)."""
    methods = ("hardlink", "symlink", "copy") if method == "auto" else (method,)
    for m in methods:
        try:
            if m == "hardlink":
                os.link(src, dst)
            elif m == "symlink":
                os.symlink(src.resolve(), dst)
            else:
                shutil.copy2(src, dst)
            return m
        except OSError:
            if m == methods[-1]:
                raise
    raise AssertionError("unreachable")


def _marker_for(tiny: Path, num_classes: int) -> dict:
    return {"tool": "tools.parity.layout", "source": str(tiny.resolve()), "classes": num_classes}


def _verify(root: Path, wnids: list[str], folders: dict[str, list[str]],
            images: dict[str, dict[str, list[Path]]]) -> None:
    for split in SPLITS:
        listed = os.listdir(root / split)
        if listed != folders[split]:
            raise LayoutError(f"os.listdir({root / split}) changed order after the folders were filled: "
                              "the original would number the classes differently; rebuild the layout")
        for i, name in enumerate(listed):
            have = sorted(os.listdir(root / split / name))
            want = sorted(f.name for f in images[split][wnids[i]])
            if have != want:
                raise LayoutError(f"{root / split / name} (class {i}, {wnids[i]}) holds {len(have)} files, "
                                  f"expected the {len(want)} {split} images of {wnids[i]}: rebuild the layout")


def build_layout(tiny: str | Path, target: str | Path, num_classes: int = 100, method: str = "auto") -> Layout:
    """Build (or reuse, if this tool built it from the same source) the tree at ``target``."""
    tiny, root = Path(tiny), Path(target)
    wnids, images = source_images(tiny, num_classes)
    for split in SPLITS:
        _check_unique_names(split, images[split])
    marker_path, want = root / MARKER, _marker_for(tiny, num_classes)
    if root.exists() and any(root.iterdir()):
        if not marker_path.is_file():
            raise LayoutError(f"{root} is not empty and was not built by tools.parity.layout: remove it "
                              "or choose another --work")
        marker = json.loads(marker_path.read_text())
        if {k: marker.get(k) for k in want} != want:
            raise LayoutError(f"{root} was built from {marker.get('source')} with {marker.get('classes')} "
                              f"classes, not {want['source']} with {num_classes}: remove it or choose another --work")
        if marker.get("complete"):
            folders = marker["folders"]
            _verify(root, wnids, folders, images)
            return Layout(root, wnids, folders, marker["method"], reused=True)
        for split in SPLITS:  # an interrupted build of ours: start again
            shutil.rmtree(root / split, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    marker_path.write_text(json.dumps({**want, "complete": False}) + "\n")
    folders: dict[str, list[str]] = {}
    used = method
    for split in SPLITS:
        (root / split).mkdir()
        for k in range(num_classes):
            (root / split / f"c{k:04d}").mkdir()
        folders[split] = os.listdir(root / split)  # the original's class order
        for i, name in enumerate(folders[split]):
            for src in images[split][wnids[i]]:
                used = _place(src, root / split / name / src.name, used)
    _verify(root, wnids, folders, images)
    marker = {**want, "complete": True, "method": used, "wnids": wnids, "folders": folders}
    marker_path.write_text(json.dumps(marker, indent=1) + "\n")
    return Layout(root, wnids, folders, used)
