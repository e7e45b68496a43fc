"""ENAS: an LSTM controller, trained by REINFORCE, samples the architectures the shared weights
train on.

Pham, Guan, Zoph, Le, Dean, "Efficient Neural Architecture Search via Parameter Sharing", ICML
2018, https://arxiv.org/abs/1802.03268. The run alternates two phases, both measured in steps:

1. **Shared weights**, ``train_steps`` steps: each training batch trains a new architecture drawn
   from the controller (which does not change in this phase, so the phase's architectures are
   drawn at its start in one batched pass: one draw per step, never per module).
2. **Controller**, ``ctrl_steps`` Adam steps at the start of the next phase, each over
   ``ctrl_aggregate`` sampled architectures, each scored on its own held-out minibatch:
   R = reward(child on the batch) + entropy_weight · H, the baseline b ← b − (1 − decay)(b − R),
   loss = −log p(a) · (R − b) + skip_weight · KL(p_skip ‖ [1 − skip_target, skip_target]),
   averaged over the aggregated samples (general_controller.py).

The controller is in ``supernet.strategies.controller``.

Two deliberate differences from the official code: the entropy is the distribution's entropy
(the macro code multiplies −log p by p of the sampled option only), and the skip penalty is the
KL of the probability the skips are sampled with (the code samples with softmax([−q, q]) but
penalises sigmoid(q)), so that under a flat reward the skip density settles at ``skip_target``.

Every random draw comes from a generator seeded by (seed, phase, step): with the controller, its
Adam state, the baseline and the history in ``state_dict``, a resumed run is the uninterrupted one.
The final architecture (chosen at the start of the last step; the config keys keep the name
``export``): the best of ``export_samples`` sampled architectures by the reward on the same
held-out batches (as the ENAS code derives), or the greedy decode.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..runtime import dist
from ..runtime.seeding import mix_seed
from .base import StepContext, Strategy, import_named
from .controller import Controller, controller_memory
from .state import Check, ListOf, Maybe, optimizer_template

EXPORT_BATCHES = 2 ** 31  # held-out batch numbers of the export, apart from the controller's


def accuracy_reward(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The ENAS reward: top-1 accuracy on the batch."""
    return float((logits.argmax(-1) == y).float().mean())


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """BatchNorm normalises with the batch's statistics (training mode) and leaves its running
    statistics as they are, for the duration (the child's reward forwards)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved, was_training = [m.momentum for m in bns], model.training
    try:
        model.train()
        for m in bns:
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
        yield
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.train(was_training)


class ENAS(Strategy):
    """The ENAS controller and schedule on the seam (see the module docstring).

    Args:
        reward_function: ``reward_function(logits, y) -> float`` of the child on a held-out batch;
            default: the config's ``reward`` (accuracy).
    """

    name = "enas"
    path_only = True  # the sampled path alone gets gradients, as in SPOS

    @dataclass
    class Config:
        lstm_size: int = 64                     # main.py hard-codes 64 (the paper's text says 100)
        lstm_layers: int = 1
        tanh_constant: Optional[float] = 1.5    # macro 1.5, micro 1.1; null: no tanh
        op_tanh_reduce: float = 2.5             # ops use tanh_constant / op_tanh_reduce
        temperature: Optional[float] = None     # logits / temperature before the tanh
        entropy_weight: float = 1.0e-4          # R += entropy_weight * H
        baseline_decay: float = 0.99            # controller_bl_dec as the scripts pass it
        skip_target: float = 0.4
        skip_weight: float = 0.8
        # The official rhythm, for runs of 310 epochs: a short run wants fewer, shorter phases and a
        # larger ctrl_lr (the controller travels about ctrl_lr x its steps; docs/strategies/enas.md).
        ctrl_lr: float = 1.0e-3                 # Adam; micro 3.5e-3
        ctrl_aggregate: int = 20                # samples per controller step (macro 20, micro 10)
        ctrl_steps: int = 50                    # controller steps per phase (macro 50, micro 30): 1,000 forwards
        train_steps: int = 100                  # shared-weight steps per phase (the official: one epoch)
        held_out: float = 0.1                   # share of the training split for rewards (5,000 of 50,000)
        reward: str = "accuracy"                # or module:function, reward(logits, y) -> float
        export: Literal["best", "greedy"] = "best"
        export_samples: Optional[int] = None    # best: how many sampled architectures (default 100)
        export_batches: Optional[int] = None    # best: held-out batches that score each (default 1)

        def __post_init__(self):
            for k in ("lstm_size", "lstm_layers", "ctrl_aggregate", "ctrl_steps", "train_steps"):
                if getattr(self, k) < 1:
                    raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
            for k in ("tanh_constant", "temperature"):
                if getattr(self, k) is not None and getattr(self, k) <= 0:
                    raise ValueError(f"{k} must be > 0 (or null for none), got {getattr(self, k)}")
            if self.op_tanh_reduce <= 0 or self.ctrl_lr <= 0 or self.entropy_weight < 0 or self.skip_weight < 0:
                raise ValueError("op_tanh_reduce and ctrl_lr must be > 0, entropy_weight and skip_weight >= 0")
            if not 0 <= self.baseline_decay < 1:
                raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
            if not 0 < self.skip_target < 1:
                raise ValueError(f"skip_target must be in (0, 1), got {self.skip_target}")
            if not 0 < self.held_out < 1:
                raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
            if self.export == "greedy" and (self.export_samples, self.export_batches) != (None, None):
                raise ValueError("export_samples and export_batches score sampled architectures: they are unused "
                                 "with export=greedy; remove them or use export=best")
            for k in ("export_samples", "export_batches"):
                if getattr(self, k) is not None and getattr(self, k) < 1:
                    raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
            reward_by_name(self.reward)  # imports and checks a module:function before any training

    def __init__(self, space: SearchSpace, config: Optional[Config] = None, seed: int = 0,
                 reward_function: Optional[Callable] = None):
        super().__init__(space, config, seed)
        if reward_function is not None and reward_problem(reward_function) is not None:
            raise ValueError(f"reward_function {reward_function!r} {reward_problem(reward_function)}; pass a function "
                             f"reward(logits, y) -> float")
        self.reward_function = reward_function or reward_by_name(self.config.reward)
        self.reward_name = self.config.reward if reward_function is None else getattr(reward_function, "__name__", "reward")
        self.controller: Optional[Controller] = None
        self.optimizer: Optional[torch.optim.Adam] = None
        self.baseline = 0.0
        self.history: list[dict] = []  # one record per controller phase
        self.found: Optional[dict] = None  # {"arch", "step", ...how it was chosen}
        self._phase: tuple = (None, [])  # (phase, its architectures): recomputed after a resume

    @property
    def held_out_fraction(self) -> float:
        return self.config.held_out

    @classmethod
    def memory_needs(cls, config, space: SearchSpace, batch_bytes: int) -> list[tuple[int, str, str]]:
        return controller_memory(space, config, batch_bytes)

    def setup(self, device: torch.device) -> None:
        c = self.config
        self.controller = Controller(self.space, c.lstm_size, c.lstm_layers, c.tanh_constant, c.op_tanh_reduce,
                                     c.temperature, c.skip_target)
        self.controller.reset_parameters(torch.Generator().manual_seed(mix_seed(self.seed, 11)))
        self.controller.to(device)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=c.ctrl_lr)

    # --- one step --------------------------------------------------------------------------------
    def train_step(self, step: int, x, y, ctx: StepContext):
        phase, at = divmod(step, self.config.train_steps)
        if at == 0 and phase > 0:  # the controller phase between two shared-weight phases
            self.controller_phase(phase, step, ctx)
        if ctx.steps is not None and step == ctx.steps - 1:  # the weights of the last step choose
            self.found = self.choose(ctx, step)
        self.space.activate(self.phase_archs(phase)[at], check=False)  # a ~ π(θ), fixed for this phase
        loss, logits = ctx.loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach(), y

    def phase_archs(self, phase: int) -> list[Arch]:
        if self._phase[0] != phase:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, 1, phase))
            with torch.no_grad():
                self._phase = (phase, self.controller.sample(self.config.train_steps, gen).archs)
        return self._phase[1]

    def reward(self, model: nn.Module, arch: Arch, x, y, ctx: StepContext) -> float:
        """The child's reward on one held-out batch (under torchrun: over every rank's share)."""
        self.space.activate(arch, check=False)
        with torch.no_grad(), ctx.autocast():
            logits = model(x)
        r = float(self.reward_function(logits.float(), y))
        if dist.world() > 1:
            total, n = dist.all_reduce_sum([r * len(y), float(len(y))], ctx.device)
            r = total / n
        return r

    def controller_phase(self, phase: int, step: int, ctx: StepContext) -> None:
        c, model = self.config, ctx.model
        rewards, entropies, densities, losses = [], [], [], []
        with batch_statistics(model):
            for s in range(c.ctrl_steps):
                sample = self.controller.sample(c.ctrl_aggregate, torch.Generator().manual_seed(mix_seed(self.seed, 2, phase, s)))
                terms = []
                for j, arch in enumerate(sample.archs):
                    i = ((phase - 1) * c.ctrl_steps + s) * c.ctrl_aggregate + j
                    xv, yv = ctx.held_out(i)
                    reward = self.reward(model, arch, xv, yv, ctx)
                    r = reward + c.entropy_weight * float(sample.entropy[j])  # R = reward + w H
                    self.baseline -= (1 - c.baseline_decay) * (self.baseline - r)  # b ← b − (1 − d)(b − R)
                    terms.append(sample.nll[j] * (r - self.baseline) + c.skip_weight * sample.skip_penalty[j])
                    rewards.append(reward)
                loss = torch.stack(terms).mean()  # −log p(a)(R − b) + w_skip KL, over the aggregate
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                entropies.append(float(sample.entropy.mean()))
                densities.append(sample.skip_density)
                losses.append(float(loss.detach()))
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        record = {"step": step, "reward": mean(rewards), "entropy": mean(entropies), "baseline": self.baseline,
                  "loss": mean(losses), "skip_density": None if None in densities else mean(densities)}
        self.history.append(record)
        for k in ("reward", "entropy", "baseline", "skip_density"):  # metrics.jsonl: controller_reward, ...
            if record[k] is not None:  # (no skip density in a space without skip choices)
                ctx.log(f"controller_{k}", record[k])

    # --- what it found ---------------------------------------------------------------------------
    def choose(self, ctx: StepContext, step: int) -> dict:
        c = self.config
        gen = torch.Generator().manual_seed(mix_seed(self.seed, 3))
        if c.export == "greedy":
            with torch.no_grad():
                arch = self.controller.sample(1, gen, greedy=True).archs[0]
            return {"arch": arch, "step": step, "chosen_by": "greedy decode of the controller (argmax of every "
                                                              "decision; a skip where its probability > 0.5)"}
        n, batches = c.export_samples or 100, c.export_batches or 1
        with torch.no_grad():
            candidates = self.controller.sample(n, gen).archs
        held = [ctx.held_out(EXPORT_BATCHES + b) for b in range(batches)]  # the same images for every candidate
        scores = []
        with batch_statistics(ctx.model):
            for arch in candidates:
                scores.append(sum(self.reward(ctx.model, arch, x, y, ctx) for x, y in held) / batches)
        best = max(range(n), key=lambda i: scores[i])  # the first of equals
        images = sum(len(y) for _, y in held) * dist.world()
        return {"arch": candidates[best], "step": step, "held_out_score": scores[best], "scores": scores,
                "chosen_by": f"best of {n} architectures sampled from the controller by held-out "
                             f"{self.reward_name} on the same "
                             f"{batches} batch{'es' * (batches > 1)} ({images} images)"}

    def final_arch(self) -> Optional[Arch]:
        return None if self.found is None else self.found["arch"]

    def final_arch_info(self) -> dict:
        if self.found is None:
            return {}
        return {k: v for k, v in self.found.items() if k not in ("arch", "scores")}

    def arch_history(self) -> Optional[dict]:
        return {"strategy": self.name, "kind": "controller", "history": self.history, "arch": self.final_arch(),
                "chosen": self.final_arch_info(), "scores": (self.found or {}).get("scores")}

    def state_dict(self) -> dict:
        return {"controller": {k: v.detach().clone() for k, v in self.controller.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "baseline": self.baseline, "history": self.history,
                "found": self.found}

    def state_template(self) -> dict:
        record = {"step": 0, "reward": 0.0, "entropy": 0.0, "baseline": 0.0, "loss": 0.0, "skip_density": Maybe(0.0)}
        found = {"arch": Check("an architecture of this space", self._arch_problem), "step": 0, "chosen_by": ""}
        if self.config.export == "best":  # the scores of the sampled architectures
            found.update(held_out_score=0.0, scores=ListOf(0.0))
        return {"controller": {k: v.detach() for k, v in self.controller.state_dict().items()},
                "optimizer": optimizer_template(self.optimizer), "baseline": 0.0, "history": ListOf(record),
                "found": Maybe(found)}

    def _arch_problem(self, arch) -> Optional[str]:
        try:
            self.space.validate(arch)
        except ValueError as e:
            return str(e)
        return None

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline, self.history, self.found = state["baseline"], list(state["history"]), state["found"]
        self._phase = (None, [])

    def summary(self) -> dict:
        return {"baseline": self.baseline} if self.history else {}


def reward_problem(fn) -> Optional[str]:
    """Why ``fn`` cannot serve as ``reward(logits, y) -> float``, or None.

    A class would be constructed and a built-in (``os.system``, ``exec``, ``max``) called with
    tensors it was never meant for, so both are refused before training rather than failing (or
    doing something else) at the first controller step.
    """
    if isinstance(fn, type):
        return f"is a class ({fn.__qualname__}), not a function"
    if not callable(fn):
        return f"is a {type(fn).__name__}, not a function"
    python = (inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial)
              or inspect.isfunction(getattr(type(fn), "__call__", None)))  # an instance of a class with __call__
    if not python:
        return f"is the built-in {getattr(fn, '__qualname__', type(fn).__name__)}, not a Python function"
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):
        return f"takes {_signature(fn)}, which cannot be called as reward(logits, y)"
    return None


def _signature(fn) -> str:
    try:
        return f"({', '.join(map(str, inspect.signature(fn).parameters.values()))})"
    except (TypeError, ValueError):
        return "no inspectable arguments"


def reward_by_name(name: str) -> Callable:
    """The reward ``strategy.reward`` names: ``accuracy``, or ``module:function``, imported (so a
    config that names one runs that module's code, as ``strategy.name=module:Class`` does)."""
    if name == "accuracy":
        return accuracy_reward
    module, _, attr = name.partition(":")
    if not (module and attr):
        raise ValueError(f"strategy.reward {name!r} is neither 'accuracy' nor module:function")
    fn = import_named("strategy.reward", name, "'accuracy'")
    problem = reward_problem(fn)
    if problem is not None:
        raise ValueError(f"strategy.reward {name!r} {problem}; name a Python function reward(logits, y) -> float, "
                         f"or use 'accuracy'")
    return fn
