import pytest
import torch

from cldst import ExperimentConfig


@pytest.fixture
def tiny_cfg():
    """A 3-task split-mnist config small enough to train in a few seconds."""

    def make(**overrides) -> ExperimentConfig:
        values = dict(dataset="split-mnist", num_tasks=3, num_classes=6, num_classes_per_task=2,
                      width=0.125, epochs=1, batch_size=64, update_frequency=4, density=0.2,
                      sparse_init="ERK", growth="gradient", device="cpu")
        values.update(overrides)
        return ExperimentConfig(**values)

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine's oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
