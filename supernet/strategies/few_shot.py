"""Few-shot training: any single-path strategy on a ``FewShotSupernet``, split at a given step.

Zhao et al., "Few-shot Neural Architecture Search", ICML 2021, https://arxiv.org/abs/2006.06863.
Steps ``0 .. split_at-1`` train the one-shot supernet (part 0 serves every architecture). At the
start of step ``split_at`` the supernet splits: each sub-supernet starts from the one-shot weights
and the optimizer's momentum (``FewShotSupernet.split``), and from then on every path the strategy
draws trains in its own sub-supernet. The steps after the split are shared: with a uniform
sampler each of the K sub-supernets gets about (steps - split_at) / K of them.

The strategy inside decides everything else (which paths, how many forwards, its own state), so
SPOS, FairNAS, ENAS or a user's single-path strategy run unchanged. A FairNAS step's m paths
each train in their own sub-supernet, and the one weight update covers them all.
"""
from __future__ import annotations

from ..arch.few_shot import FewShotSupernet
from .base import Strategy


class FewShot(Strategy):
    """``inner``, with its supernet split into sub-supernets at step ``split_at``.

    Args:
        inner: a single-path strategy (``single_path()``) built on ``SearchSpace(few_shot_supernet)``.
        split_at: the first step of the sub-supernets (0: they train from the start).
    """

    def __init__(self, inner: Strategy, split_at: int):
        model = inner.space.model
        if not isinstance(model, FewShotSupernet):
            raise ValueError("FewShot needs a strategy built on SearchSpace(FewShotSupernet(supernet, labels))")
        if not inner.single_path():
            raise ValueError(f"strategy {inner.name!r} mixes or gates the options of a choice in one forward, so no "
                             f"single sub-supernet can run it; few-shot training needs a single-path strategy "
                             f"(spos, fairnas, enas)")
        if split_at < 0:
            raise ValueError(f"split_at must be >= 0, got {split_at}")
        super().__init__(inner.space, inner.config, inner.seed)
        self.inner, self.model, self.split_at = inner, model, split_at
        self.name, self.path_only = inner.name, inner.path_only  # the checkpoint's strategy is the inner one

    @property
    def held_out_fraction(self) -> float:
        return self.inner.held_out_fraction

    def setup(self, device):
        self.inner.setup(device)

    def train_step(self, step, x, y, ctx):
        if step >= self.split_at and not self.model.is_split:  # (a resumed run finds it split already)
            self.model.split(ctx.optimizer)  # W_k ← W_one-shot, momentum_k ← momentum, for every sub-supernet k
        out = self.inner.train_step(step, x, y, ctx)  # each path runs in its own sub-supernet
        if self.model.is_split:
            self.model.count_trained()
        return out

    def state_dict(self) -> dict:
        return self.inner.state_dict()  # the split itself is in the model's state (split_flag, part_steps)

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def state_template(self):
        return self.inner.state_template()

    def final_arch(self):
        return self.inner.final_arch()

    def final_arch_info(self) -> dict:
        return self.inner.final_arch_info()

    def arch_history(self):
        return self.inner.arch_history()

    def summary(self) -> dict:
        """The inner strategy's figures, and ``few_shot``: the split and each sub-supernet's steps."""
        m = self.model
        return {**self.inner.summary(), "few_shot": {
            "labels": list(m.labels), "parts": len(m.parts), "split_at": self.split_at, "split": m.is_split,
            "part_steps": m.part_steps.tolist(), "params": sum(p.numel() for p in m.parameters())}}
