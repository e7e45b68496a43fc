"""NNI 2.x's legacy one-shot trainers, as thin faces on the one loop (``supernet.train.fit``).

``nni.retiarii.oneshot.pytorch`` offered ``BaseOneShotTrainer`` with ``fit()`` and ``export()``
and one trainer per method, each with its own training loop. Here a trainer only maps NNI's
arguments onto a ``TrainConfig``, a strategy and the loop; it holds no training logic. An NNI
2.x script ports by changing its imports (README: "Coming from NNI").
"""
from __future__ import annotations

import abc
import math
import numbers
import os
import sys
import warnings
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from ..arch import Arch
from ..search.config import SearchConfig
from ..train.config import TrainConfig
from ..strategies import DARTS, SPOS, StepContext, Strategy
from ..train.loop import fit
from .checks import check_dataset, check_inputs, probe_candidates

HERE = os.path.dirname(os.path.abspath(__file__))


class BaseOneShotTrainer(abc.ABC):
    """NNI's interface: every input is given to ``__init__``; ``fit()`` trains, ``export()`` returns
    the architecture found (a dict from label to index)."""

    @abc.abstractmethod
    def fit(self) -> None:
        ...

    @abc.abstractmethod
    def export(self) -> Any:
        ...


class Metered(Strategy):
    """``strategy`` with NNI's ``metrics(logits, y) -> dict`` logged beside the loss each step."""

    def __init__(self, strategy: Strategy, metrics: Optional[Callable]):
        self.inner, self.metrics = strategy, metrics
        self.name, self.path_only, self.space = strategy.name, strategy.path_only, strategy.space

    held_out_fraction = property(lambda self: self.inner.held_out_fraction)

    def setup(self, device):
        self.inner.setup(device)

    def train_step(self, step, x, y, ctx: StepContext):
        loss, logits, targets = self.inner.train_step(step, x, y, ctx)
        for k, v in (self.metrics(logits, targets) if self.metrics else {}).items():
            ctx.log(k, float(v))
        return loss, logits, targets

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def final_arch(self):
        return self.inner.final_arch()

    def final_arch_info(self):
        return self.inner.final_arch_info()


class OneShotTrainer(BaseOneShotTrainer):
    """What every NNI-style trainer shares: NNI's arguments checked and mapped onto the loop."""

    DATASET = "dataset"  # the dataset argument's name in this trainer's signature, for messages

    def __init__(self, model: nn.Module, loss: Callable, metrics: Optional[Callable], optimizer: torch.optim.Optimizer,
                 num_epochs: int, dataset_train: Dataset, batch_size: int = 64, workers: int = 4,
                 device: Optional[torch.device | str] = None, log_frequency: Optional[int] = None, seed: int = 0):
        who = type(self).__name__
        for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
        self.space = check_inputs(who, model, loss, metrics, optimizer, dataset_train, self.DATASET)
        self.model, self.loss, self.metrics, self.optimizer = model, loss, metrics, optimizer
        num_epochs, batch_size = int(num_epochs), int(batch_size)  # e.g. numpy ints, which DataLoader refuses
        self.dataset_train, self.batch_size, self.workers, self.seed = dataset_train, batch_size, workers, seed
        self.device = "auto" if device is None else str(device)
        per_epoch = max(1, len(dataset_train) // batch_size)
        self.steps = num_epochs * per_epoch
        self.log_frequency = log_frequency or per_epoch
        self.fitted = False

    def _train(self, strategy: Strategy, out_dir=None, grad_clip: float = 0.0) -> dict:
        """The start of every ``fit()``: probe the candidates' shapes on one batch, then the loop."""
        probe_candidates(type(self).__name__, self.model, self.space, self.dataset_train)
        cfg = TrainConfig(steps=self.steps, batch_size=self.batch_size, log_every=self.log_frequency,
                          checkpoint_every=self.steps, seed=self.seed, device=self.device, grad_clip=grad_clip)
        summary = fit(self.model, self.dataset_train, cfg, out_dir, meta={}, run_config={},
                      strategy=Metered(strategy, self.metrics), optimizer=self.optimizer, criterion=self.loss,
                      num_workers=self.workers, desc=type(self).__name__, on_log=_print_record)
        self.fitted = True
        return summary

    def _found(self, strategy: Strategy) -> Arch:
        """The architecture ``strategy`` chose in ``fit()`` (before it there is none)."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.export() has no architecture before training: "
                               f"call fit() first")
        return strategy.final_arch()


def nni_ignores(who: str, what: str, how: str) -> None:
    """One warning where NNI accepted an argument and ignored it: the script runs as it did, and
    says what was ignored and how to turn it on."""
    frame, level = sys._getframe(0), 1  # the warning points at the user's line: the first frame outside this package
    while frame.f_back is not None and frame.f_code.co_filename.startswith(HERE):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{who}: {what} is ignored, as in NNI; {how}", UserWarning, stacklevel=level)


def _print_record(record: dict) -> None:
    print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))


class SinglePathTrainer(OneShotTrainer):
    """SPOS supernet training with NNI's ``SinglePathTrainer`` / ``RandomTrainer`` signature.

    ``fit()`` trains one uniformly sampled path per step (the ``spos`` strategy on the shared loop,
    with your optimizer, loss and LR). ``export()`` differs from NNI on purpose: NNI returned one
    fresh random sample; this returns the **best architecture found** by the SPOS evolutionary
    search, each candidate scored on ``dataset_valid`` after its BatchNorm statistics are
    recalibrated on training batches (``search`` sets its size; its defaults are below). With
    ``search=SearchConfig(algorithm='nsga2', objectives=['error', 'flops'])`` the search is NSGA-II:
    ``export()`` returns the front's lowest-error member and ``export_front()`` the whole front.

    Args:
        mutator: NNI 1.x's mutator object (keyword only: NNI 2.x's positional order has none); not
            used here (choices are set by the strategy), so anything but None is refused.
        search: a ``SearchConfig`` for ``export()``; default: population 50, 10 generations,
            10 recalibration batches of ``batch_size``.
        seed: fixes the paths and batches (NNI had none).
    """

    DATASET = "dataset_train"

    def __init__(self, model, loss, metrics, optimizer, num_epochs, dataset_train, dataset_valid, batch_size=64,
                 workers=4, device=None, log_frequency=None, *, mutator=None, search: Optional[SearchConfig] = None,
                 seed: int = 0):
        if mutator is not None:
            raise ValueError("mutator is NNI 1.x's; supernet's SinglePathTrainer samples paths itself: pass mutator=None")
        super().__init__(model, loss, metrics, optimizer, num_epochs, dataset_train, batch_size, workers, device,
                         log_frequency, seed)
        check_dataset(type(self).__name__, dataset_valid, "dataset_valid (export() scores each candidate on it)")
        self.dataset_valid = dataset_valid
        self.search = search or SearchConfig(generations=10, recal_batches=10, recal_batch_size=self.batch_size,
                                             val_batch_size=max(self.batch_size, 256), seed=seed, progress=True)
        self.result: Optional[dict] = None
        self._search = None  # the search export() and export_front() share

    def fit(self) -> None:
        self._search = None  # new weights: a search of the old ones no longer answers
        self._train(SPOS(self.space, seed=self.seed))

    def export(self) -> Arch:
        """The search's answer: the best architecture (for ``algorithm='nsga2'``, the front's lowest-error member)."""
        search = self._searched()
        best = search.best()
        self.result = {**best, "evaluated": len(search.results), "generations": math.ceil(len(search.results) / max(1, self.search.population))}
        return best["arch"]

    def export_front(self) -> list[dict]:
        """The accuracy-versus-cost front of ``search=SearchConfig(algorithm='nsga2', objectives=[...])``:
        every non-dominated architecture found, by increasing error, each a dict with ``arch``, its
        scores (``top1``, ``top5``, ``top1_err``, ``top5_err``) and exact ``costs``."""
        if self.search.algorithm != "nsga2":
            raise ValueError(f"export_front() needs a multi-objective search, and this trainer's is "
                             f"algorithm={self.search.algorithm!r}: pass search=SearchConfig(algorithm='nsga2', "
                             f"objectives=['error', 'flops']), or call export() for one architecture")
        return self._searched().pareto()["front"]

    def _searched(self):
        """The search over the trained supernet (``self.search``), run once for export() and export_front()."""
        if self._search is not None:
            return self._search
        from ..cost import CostModel
        from ..data.loader import eval_loader, fixed_batches
        from ..search import CandidateEvaluator, make_search
        from ..runtime.device import resolve_device
        s, device = self.search, resolve_device(self.device)
        recal = fixed_batches(self.dataset_train, s.recal_batch_size, s.recal_batches, s.seed)
        val = list(eval_loader(self.dataset_valid, s.val_batch_size))
        cost = CostModel(self.model.cpu(), input_shape=tuple(recal[0][0].shape[1:]))
        evaluator = CandidateEvaluator(self.model, recal, val, device=device)
        self._search = make_search(self.space, evaluator, s, cost)
        self._search.run(progress=s.progress)
        return self._search


RandomTrainer = SinglePathTrainer  # NNI's other name for it


class DartsTrainer(OneShotTrainer):
    """DARTS with NNI's ``DartsTrainer`` signature: the ``darts`` strategy on the shared loop.

    ``dataset`` is split in two seeded random halves, one training the weights with your
    optimizer (and its LR), the other α (Adam, ``arc_learning_rate``), as NNI halves it; an epoch
    is one pass over the weights' half. Each step takes an α step on a held-out batch, then a weight
    step clipped to ``grad_clip`` (NNI hard-coded 5 and ignored the argument). ``unrolled=True`` is
    the second-order gradient, with a virtual step that really moves the weights (NNI's never
    did: ``nni/retiarii/oneshot/pytorch/darts.py`` at tag v2.10). ``export()`` returns the derived
    architecture: argmax op other than ``none``, and for a node's ``InputChoice`` its top ``n_chosen`` by its own α, as NNI's; the
    ``darts`` space's gated edges follow the paper's strongest-edge rule instead.

    Args:
        learning_rate: NNI's argument, which it never used; the optimizer's LR trains the weights.
            A value other than that LR is ignored, as in NNI, with a warning.
        seed: fixes α's initialisation, the split and the batches (NNI had none).
    """

    def __init__(self, model, loss, metrics, optimizer, num_epochs, dataset, grad_clip=5.0, learning_rate=None,
                 batch_size=64, workers=4, device=None, log_frequency=None, arc_learning_rate=3.0e-4, unrolled=False,
                 *, seed: int = 0):
        if grad_clip is not None and grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 or None: no clipping), got {grad_clip}")
        super().__init__(model, loss, metrics, optimizer, num_epochs, dataset, batch_size, workers, device,
                         log_frequency, seed)
        lr = optimizer.param_groups[0]["lr"]
        if learning_rate is not None and learning_rate != lr:
            nni_ignores("DartsTrainer", f"learning_rate={learning_rate}",
                        f"the optimizer's LR {lr} trains the weights: set the LR on your optimizer to change it")
        per_epoch = max(1, len(dataset) // 2 // self.batch_size)  # an epoch is a pass over the weights' half
        self.steps = num_epochs * per_epoch
        self.log_frequency = log_frequency or per_epoch
        self.grad_clip = grad_clip or 0.0
        self.strategy = DARTS(self.space, DARTS.Config(unrolled=unrolled, arch_lr=arc_learning_rate, held_out=0.5),
                              seed=seed)

    def fit(self) -> None:
        self._train(self.strategy, grad_clip=self.grad_clip)

    def export(self) -> Arch:
        return self._found(self.strategy)


class EnasTrainer(OneShotTrainer):
    """ENAS with NNI's ``EnasTrainer`` signature: the ``enas`` strategy on the shared loop.

    ``dataset`` is split in two seeded random halves (NNI: the two contiguous halves): one trains
    the weights with your optimizer and its LR, an epoch being one pass over it; the other scores
    the controller's samples with ``reward_function(logits, y)``. After each epoch the controller
    takes one step per ``ctrl_steps_aggregate`` batches of the other half, each sample scored on
    one batch, reward + ``entropy_weight`` x entropy against an EMA baseline (``baseline_decay``),
    plus ``skip_weight`` x the skip penalty, with Adam at ``ctrl_lr``. The weights' gradient norm is
    clipped to ``grad_clip``. ``export()`` differs from NNI on purpose: NNI returned one random
    sample of the controller; this returns the best of 100 samples by ``reward_function`` on the
    same held-out batch (``export_samples`` sets N).

    Args:
        ctrl_kwargs: NNI's ReinforceController arguments: ``lstm_size``, ``lstm_num_layers``,
            ``tanh_constant``, ``skip_target``, ``temperature`` and ``entropy_reduction`` ('sum' only).
            NNI applies one tanh constant to every decision (no op reduction), and so does this face.
        seed: fixes the controller's initialisation, the split, the batches and the samples.
    """

    CTRL_KEYS = {"lstm_size": "lstm_size", "lstm_num_layers": "lstm_layers", "tanh_constant": "tanh_constant",
                 "skip_target": "skip_target", "temperature": "temperature"}

    def __init__(self, model, loss, metrics, reward_function, optimizer, num_epochs, dataset, batch_size=64,
                 workers=4, device=None, log_frequency=None, grad_clip=5.0, entropy_weight=0.0001, skip_weight=0.8,
                 baseline_decay=0.999, ctrl_lr=0.00035, ctrl_steps_aggregate=20, ctrl_kwargs=None, *,
                 export_samples: int = 100, seed: int = 0):
        from ..strategies import ENAS
        if grad_clip is not None and grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 or None: no clipping), got {grad_clip}")
        aggregate = ctrl_steps_aggregate
        if isinstance(aggregate, bool) or not isinstance(aggregate, numbers.Integral) or aggregate < 1:
            raise ValueError(f"ctrl_steps_aggregate must be a positive int (samples per controller step), got "
                             f"{ctrl_steps_aggregate!r}")
        aggregate = int(aggregate)
        super().__init__(model, loss, metrics, optimizer, num_epochs, dataset, batch_size, workers, device,
                         log_frequency, seed)
        ctrl = dict(ctrl_kwargs or {})
        if ctrl.pop("entropy_reduction", "sum") != "sum":
            raise ValueError("ctrl_kwargs entropy_reduction: only 'sum' is supported (NNI's default)")
        unknown = [k for k in ctrl if k not in self.CTRL_KEYS]
        if unknown:
            raise ValueError(f"unknown ctrl_kwargs key {unknown[0]!r}; valid: {', '.join(self.CTRL_KEYS)}, "
                             f"entropy_reduction")
        half = len(dataset) // 2
        per_epoch = max(1, (len(dataset) - half) // batch_size)  # an epoch is a pass over the weights' half
        self.steps = num_epochs * per_epoch
        self.log_frequency = log_frequency or per_epoch
        self.grad_clip = grad_clip or 0.0
        config = ENAS.Config(entropy_weight=entropy_weight, skip_weight=skip_weight, baseline_decay=baseline_decay,
                             ctrl_lr=ctrl_lr, ctrl_aggregate=aggregate, op_tanh_reduce=1.0,
                             ctrl_steps=max(1, half // batch_size // ctrl_steps_aggregate), train_steps=per_epoch,
                             held_out=0.5, export_samples=export_samples,
                             **{self.CTRL_KEYS[k]: v for k, v in ctrl.items()})
        self.strategy = ENAS(self.space, config, seed=seed, reward_function=reward_function)

    def fit(self) -> None:
        self._train(self.strategy, grad_clip=self.grad_clip)

    def export(self) -> Arch:
        return self._found(self.strategy)
