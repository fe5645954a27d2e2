"""CIFAR-100 from the official python pickles, downloaded by torchvision into ``data_dir``."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .base import DataError, ImageSplit

MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
FOLDER = "cifar-100-python"


def _read_pickle(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    except Exception as e:
        raise DataError(f"{path} is not a CIFAR-100 pickle ({type(e).__name__}: {e}); "
                        f"delete {path.parent} and download it again") from e
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _download(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, str(root), filename=URL.rsplit("/", 1)[1], md5=MD5)
    except Exception as e:
        raise DataError(
            f"CIFAR-100 is not in {root / FOLDER} and could not be downloaded ({type(e).__name__}). "
            f"Download {URL} and extract it into {root}/ so that {root / FOLDER}/train exists") from e


def load_cifar100(data_dir: str | Path, download: bool = True) -> ImageSplit:
    root = Path(data_dir)
    folder = root / FOLDER
    if not ((folder / "train").is_file() and (folder / "test").is_file()):
        if not download:
            raise DataError(f"CIFAR-100 is not in {folder}: download {URL} and extract it into {root}/")
        root.mkdir(parents=True, exist_ok=True)
        _download(root)
    train_x, train_y = _read_pickle(folder / "train")
    test_x, test_y = _read_pickle(folder / "test")
    return ImageSplit(train_x, train_y, test_x, test_y, MEAN, STD, hflip=True,
                      info={"source": str(folder)})


def load(cfg, progress: bool = False) -> ImageSplit:
    return load_cifar100(cfg.data_dir)
