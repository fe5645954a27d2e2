import pickle

import numpy as np
import pytest
import torch

from cldst import ExperimentConfig
from cldst.data import DataError, class_order, load_benchmark
from cldst.data import cifar100 as cifar


def write_fake_cifar100(root, n_train=200, n_test=100, seed=0):
    """Pickles in the exact layout of cifar-100-python/{train,test} (latin1 keys, CHW planes)."""
    rng = np.random.default_rng(seed)
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    made = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(i % 100) for i in range(n)]
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{name} batch",
                 "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": data}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        made[name] = (data, fine)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    return made


def test_cifar100_pickles_load_to_uint8_chw(tmp_path):
    made = write_fake_cifar100(tmp_path)
    split = cifar.load_cifar100(tmp_path, download=False)
    data, fine = made["train"]
    assert split.train_x.shape == (200, 3, 32, 32) and split.train_x.dtype == torch.uint8
    assert split.test_x.shape == (100, 3, 32, 32)
    # Row i of the pickle is 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert int(split.train_x[7, 1, 2, 5]) == int(data[7, 1024 + 2 * 32 + 5])
    assert split.train_y.tolist() == fine
    assert split.mean == (0.5071, 0.4865, 0.4409) and split.std == (0.2673, 0.2564, 0.2762)


def test_cifar100_benchmark_keeps_the_configured_classes(tmp_path):
    write_fake_cifar100(tmp_path)
    cfg = ExperimentConfig(dataset="cifar100", num_classes=10, num_tasks=5, data_dir=str(tmp_path))
    split = load_benchmark(cfg)
    assert split.train_y.max() == 9 and len(split.train_y) == 20 and len(split.test_y) == 10


def test_missing_cifar100_says_what_to_download(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        cifar.load_cifar100(tmp_path / "data")
    msg = str(err.value)
    assert "\n" not in msg and cifar.URL in msg and "extract it into" in msg


def test_corrupt_cifar100_pickle(tmp_path):
    write_fake_cifar100(tmp_path)
    (tmp_path / cifar.FOLDER / "train").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="is not a CIFAR-100 pickle"):
        cifar.load_cifar100(tmp_path, download=False)


@pytest.mark.slow
def test_split_mnist_is_seeded_and_recorded():
    cfg = ExperimentConfig(dataset="split-mnist")
    a, b = load_benchmark(cfg), load_benchmark(cfg)
    other = load_benchmark(ExperimentConfig(dataset="split-mnist", data_seed=1))
    assert a.train_x.shape == (4000, 1, 28, 28) and a.test_x.shape == (1000, 1, 28, 28)
    assert torch.bincount(a.test_y).tolist() == [100] * 10
    assert torch.equal(a.test_x, b.test_x) and not torch.equal(a.test_x, other.test_x)
    assert a.info["split_seed"] == 0 and other.info["split_seed"] == 1


@pytest.mark.slow
def test_seeded_class_order_relabels_consistently():
    order = class_order(10, "seeded", 3)
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    native = load_benchmark(ExperimentConfig(dataset="split-mnist"))
    seeded = load_benchmark(ExperimentConfig(dataset="split-mnist", class_order="seeded", data_seed=0))
    order = class_order(10, "seeded", 0)
    # class k of the seeded benchmark holds the images of native label order[k]
    k = 0
    assert torch.equal(seeded.test_x[seeded.test_y == k], native.test_x[native.test_y == order[k]])
    assert seeded.info["class_order"] == order.tolist()
