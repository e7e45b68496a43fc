"""The strategy seam: everything that differs between one-shot methods, in one object.

The loop (``supernet.train.loop.fit``) owns what every method shares: the training stream, the
LR, the weight optimizer, the NaN guard, gradient averaging under torchrun, checkpoints and
metrics. A strategy owns what happens inside one step:

- it decides the choices before each forward, by writing ``active`` (an index per label: SPOS,
  FairNAS, ENAS) or ``weights`` (DARTS softmax, FBNet Gumbel-softmax, Proxyless gates) through
  its ``SearchSpace``; it never swaps modules;
- it runs the step's forwards and backwards (one path, m paths, an architecture step first);
- it owns its architecture parameters or controller, their optimizer and its random state, all
  saved in every checkpoint (``state_dict``), so a resumed run is bitwise the uninterrupted one;
- it says whether only the sampled path gets gradients (``path_only``);
- it may choose an architecture itself (``final_arch``), after which retrain, evaluate and export
  do not know which strategy ran.

A new method is one subclass with a ``Config`` dataclass, registered in ``strategies/__init__.py``.
"""
from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..nn.choices import InputChoice
from ..nn.layers import DropPath
from ..runtime import dist
from ..runtime.seeding import mix_seed
from ..runtime.typed import ConfigError
from .state import ANY, Fields, ListOf, check_state, optimizer_template
from .state import StrategyStateError  # noqa: F401  (here for the loop, which imports strategies.base only)


@dataclass
class StepContext:
    """What the loop lends a strategy for one step.

    Attributes:
        net: the module to call; under torchrun with ``path_only=False`` it is the DDP wrapper.
        criterion: ``criterion(logits, y) -> loss`` (cross-entropy with the run's label smoothing).
        optimizer: the weight optimizer (DARTS' unrolled step reads its LR, momentum and decay).
        device: where the batches live.
        autocast: a context-manager factory (bf16 autocast on CUDA, nothing on CPU).
        held_out: ``held_out(i)`` is batch ``i`` of the held-out stream (a split of the training
            data, a function of (seed, i) like the training batches), on ``device``; None unless
            the strategy asked for one (``held_out_fraction``).
        steps: the run's length in steps (ENAS chooses at the start of the last one); None when unknown.
    """

    net: nn.Module
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    device: torch.device
    autocast: Callable
    held_out: Optional[Callable[[int], tuple[torch.Tensor, torch.Tensor]]] = None
    steps: Optional[int] = None
    logs: dict = field(default_factory=dict)  # name -> [sum, count] over the current log window

    @property
    def model(self) -> nn.Module:
        """The model itself: ``net`` without its DDP wrapper (an architecture step runs it outside DDP)."""
        return self.net.module if isinstance(self.net, nn.parallel.DistributedDataParallel) else self.net

    def loss(self, x: torch.Tensor, y: torch.Tensor, net: Optional[nn.Module] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward under the current decisions: ``(loss, logits)``. ``net`` replaces ``self.net``
        (an architecture step runs the model itself, outside DDP, and averages its own gradients)."""
        with self.autocast():
            logits = (self.net if net is None else net)(x)
            return self.criterion(logits.float(), y), logits

    def log(self, name: str, value: float) -> None:
        """A strategy's own figure (a latency term, an entropy, a temperature), averaged over each
        log window and written to ``metrics.jsonl`` beside the loss."""
        s = self.logs.setdefault(name, [0.0, 0])
        s[0] += float(value)
        s[1] += 1


class Strategy:
    """Base of every strategy; subclasses override ``train_step`` and what they own.

    Args:
        space: the supernet's search space (``space.model`` is the supernet).
        config: an instance of the subclass's ``Config`` dataclass (``strategy`` config section).
        seed: the run's seed; every random decision is a function of (seed, step).
    """

    name: ClassVar[str] = "base"

    @dataclass
    class Config:
        pass

    path_only: ClassVar[bool] = True  # only the sampled path gets gradients (step_on_path, grads averaged by hand)

    @classmethod
    def single_path(cls) -> bool:
        """Whether every forward runs one option per choice (SPOS, FairNAS, ENAS), so that a few-shot
        supernet can run it in one sub-supernet; False for a strategy that mixes or gates options."""
        return cls.path_only

    def __init__(self, space: SearchSpace, config=None, seed: int = 0):
        self.space = space
        self.config = config if config is not None else self.Config()
        self.seed = seed

    # What the loop asks of a strategy ----------------------------------------------------------
    @property
    def held_out_fraction(self) -> float:
        """Fraction of the training split held out as the architecture stream (0: none)."""
        return 0.0

    def setup(self, device: torch.device) -> None:
        """Called once the model is on ``device``, before a checkpoint is loaded: create the
        architecture parameters or controller there."""

    def train_step(self, step: int, x: torch.Tensor, y: torch.Tensor, ctx: StepContext):
        """Decide, forward and backward for step ``step``; the loop then checks the loss and
        updates the weights. Returns ``(loss, logits, targets)`` for the metrics (detached)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: tensors and plain data only (checkpoints load
        with ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output; a state that does not fit ``state_template()`` raises
        ``StrategyStateError`` naming the entry (a subclass checks, then loads)."""
        check_state(self.name, state, self.state_template())

    def state_template(self):
        """What ``load_state_dict`` accepts, by example (``supernet.strategies.state``); by default
        the entries ``state_dict()`` has, each of any value, and no others."""
        return Fields({key: ANY for key in self.state_dict()})

    def final_arch(self) -> Optional[Arch]:
        """The architecture this strategy found, or None when a search must pick one (SPOS)."""
        return None

    def final_arch_info(self) -> dict:
        """How ``final_arch()`` chose its architecture, written into ``search/best_arch.json`` beside it."""
        return {}

    def arch_history(self) -> Optional[dict]:
        """How the architecture distribution moved during training (DARTS' α snapshots), written to
        ``search/arch_history.json`` and plotted as ``search/search.png``; None when there is none."""
        return None

    def summary(self) -> dict:
        """Figures for the end-of-training line (e.g. SPOS's FLOPs-bin fallbacks)."""
        return {}

    @classmethod
    def memory_needs(cls, config, space: SearchSpace, batch_bytes: int) -> list[tuple[int, str, str]]:
        """What this strategy would allocate itself, estimated from ``config`` before it is built
        (a size in its settings must be refused before it is allocated): ``(bytes held at once
        beside the supernet's training, the setting that decides it, what it is)`` for each peak.

        Args:
            batch_bytes: the bytes of one training batch of this process.
        """
        return []


def import_named(key: str, name: str, instead: str):
    """``module:attr`` imported, as an entry point is: the module's code runs, so a config that
    names one is code. Any failure is one ``ConfigError`` line naming ``key`` (``instead``: what
    else the setting takes)."""
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{key} {name!r}: cannot import {attr} from {module} ({e}); put the module on PYTHONPATH "
                          f"or use {instead}") from None
    except Exception as e:  # the module's own code failed on import: its error in one line, not its traceback
        raise ConfigError(f"{key} {name!r}: importing {module} failed with {type(e).__name__}: {e}") from None


# --- what the strategies with weights per label (DARTS, Proxyless, FBNet) share -------------------
@contextlib.contextmanager
def frozen(model: nn.Module):
    """The model's trainable parameters with ``requires_grad`` off for a while (then back on)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def argmax_arch(space: SearchSpace, labels: list[str], params: list[torch.Tensor]) -> Arch:
    """Argmax per LayerChoice; the ``n_chosen`` largest inputs per InputChoice."""
    arch = {}
    for label, a in zip(labels, params):
        c = space.choice(label)
        if isinstance(c, InputChoice):
            arch[label] = sorted(torch.topk(a.detach().cpu(), c.n_chosen).indices.tolist())
        else:
            arch[label] = int(a.detach().argmax())
    return arch


def weights_history(strategy: Strategy, labels: list[str], edges: dict | None = None) -> dict:
    """``arch_history()`` of a strategy with weights per label (DARTS, Proxyless, FBNet): its options,
    its snapshots (``strategy.history``) plus the final weights, and the architecture it chooses."""
    return {"strategy": strategy.name, "options": {l: list(strategy.space.choice(l).values) for l in labels},
            "edges": edges or {}, "history": strategy.history + [{"step": None, "weights": strategy.probabilities()}],
            "arch": strategy.final_arch()}


def weights_state(key: str, params: list[torch.Tensor], optimizer: torch.optim.Optimizer, history: list) -> dict:
    """The checkpoint part of a strategy with weights per label: ``{key: the weights, "optimizer",
    "history"}`` (DARTS and Proxyless save α as "alpha", FBNet θ as "theta")."""
    return {key: [p.detach().clone() for p in params], "optimizer": optimizer.state_dict(), "history": history}


def weights_template(strategy: Strategy, key: str, params: list[torch.Tensor], labels: list[str]) -> dict:
    """What ``weights_state`` saved looks like for this strategy: its own weights' shapes, its
    optimizer's state and snapshots of ``probabilities()`` over ``labels``."""
    snapshot = {"step": 0, "weights": {l: [0.0] * strategy.space.n_options(l) for l in labels}}
    return {key: [p.detach() for p in params], "optimizer": optimizer_template(strategy.optimizer),
            "history": ListOf(snapshot)}


def load_weights_state_(state: dict, key: str, params: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> list:
    """``weights_state`` read back (after ``check_state``): the weights copied in place (the
    optimizer keeps its references), the optimizer's state; returns the history."""
    with torch.no_grad():
        for p, value in zip(params, state[key]):
            p.copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    return list(state["history"])


class Plain(Strategy):
    """A network with no choices (retraining): one forward and backward over all parameters.

    Args:
        aux_weight: adds this times the loss of the model's ``aux_logits`` (DARTS' auxiliary head,
            which the model sets in training mode).
        drop_path: the drop-path probability of every ``DropPath`` at the last step, ramped
            linearly from 0 over ``steps`` (DARTS: 0.2).
    """

    name = "plain"
    path_only = False

    def __init__(self, aux_weight: float = 0.0, drop_path: float = 0.0, steps: int = 1, seed: int = 0):
        super().__init__(space=None, seed=seed)
        self.aux_weight, self.drop_path, self.steps = aux_weight, drop_path, steps

    def train_step(self, step, x, y, ctx):
        model = ctx.model
        if self.drop_path:  # the masks: a function of (seed, step, rank)
            gen = torch.Generator(ctx.device).manual_seed(mix_seed(self.seed, step, dist.rank()))
            for m in model.modules():
                if isinstance(m, DropPath):
                    m.p, m.generator = self.drop_path * step / self.steps, gen
        loss, logits = ctx.loss(x, y)
        if self.aux_weight:
            loss = loss + self.aux_weight * ctx.criterion(model.aux_logits.float(), y)
        loss.backward()
        return loss.detach(), logits.detach(), y
