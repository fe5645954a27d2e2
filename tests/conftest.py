import pytest

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
