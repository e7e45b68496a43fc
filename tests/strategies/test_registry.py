"""Every registered strategy, present and future, on the same checks with no list to update: a run
resumed from a mid-run checkpoint is bitwise the uninterrupted one, the strategy's state survives a
round trip and really moved, and its final architecture (if it chooses one) fits the space. Each runs
on the first registered space it accepts (``standin.short_strategy``). Two gloo ranks against one
process, over the same registry: tests/test_distributed.py; a kill inside a checkpoint write:
tests/test_crash.py."""
import pytest
import torch

from supernet.data import DataConfig, build_data
from supernet.strategies import STRATEGIES
from supernet.train.config import OptimConfig, TrainConfig

from ..conftest import assert_equal_nested, assert_resume_is_exact
from .standin import short_strategy


def make(name: str):
    return short_strategy(name)[:2]  # (model, strategy)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_registered_strategy_resumes_exactly_and_round_trips_its_state(tmp_path, name):
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=96, synthetic_test=32,
                                 synthetic_classes=5, val_per_class=2))
    cfg = TrainConfig(steps=6, batch_size=8, checkpoint_every=3, keep_checkpoints=5, log_every=1, progress=False,
                      optim=OptimConfig(lr=0.05))  # FairNAS sums its paths' gradients: LR 0.5 diverges here
    full, strategy = assert_resume_is_exact(tmp_path, lambda: make(name), data.train, cfg, at=3)

    _, fresh = make(name)
    fresh.setup(torch.device("cpu"))
    before = fresh.state_dict()
    fresh.load_state_dict(full["strategy"])
    assert_equal_nested(fresh.state_dict(), full["strategy"])  # what was saved is what comes back
    if before:  # a strategy with state of its own (architecture parameters, a controller) trained it
        with pytest.raises(AssertionError):
            assert_equal_nested(before, full["strategy"])

    arch = strategy.final_arch()
    if arch is not None:  # a strategy that chooses: an architecture of this space, with its record
        assert strategy.space.validate(arch) == arch and fresh.final_arch() == arch
        assert isinstance(strategy.final_arch_info(), dict)


def test_a_strategy_written_for_the_old_hook_names_is_refused_by_name():
    from supernet.runtime.typed import ConfigError
    from supernet.strategies import Strategy, register

    class Old(Strategy):
        name = "old-hooks"

        def export(self):
            return {}

    with pytest.raises(ConfigError, match=r"defines export\(\), which is now called final_arch\(\)"):
        register(Old)
    assert "old-hooks" not in STRATEGIES
