"""A new one-shot strategy in one class: a sampling distribution learned on held-out batches.

    python examples/custom_strategy.py                       # ~1 min on 2 CPU cores: train, retrain, evaluate
    PYTHONPATH=examples supernet train-supernet --config digits --run-dir runs/ls \\
        strategy.name=custom_strategy:LearnedSampling strategy.lr=0.1

Each step: (1) draw a path from softmax(θ), score it on a held-out batch and move θ towards paths
that score above the running baseline (REINFORCE); (2) train that path on the training batch.
The loop does the rest: data, LR, the weight update on the path, checkpoints, resume, metrics.
"""
from dataclasses import dataclass

import torch

from supernet.strategies import Strategy, register


@register
class LearnedSampling(Strategy):
    name = "learned-sampling"

    @dataclass
    class Config:
        lr: float = 0.05             # Adam on θ
        held_out: float = 0.2        # fraction of the training split that scores paths
        baseline_decay: float = 0.9  # EMA of the reward

    held_out_fraction = property(lambda self: self.config.held_out)

    def setup(self, device):
        self.theta = {l: torch.zeros(self.space.n_options(l), device=device, requires_grad=True) for l in self.space.labels}
        self.opt = torch.optim.Adam(self.theta.values(), lr=self.config.lr)
        self.baseline = 0.0

    def train_step(self, step, x, y, ctx):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)  # the path is a function of (seed, step)
        arch = {l: int(torch.multinomial(t.detach().softmax(0).cpu(), 1, generator=g)) for l, t in self.theta.items()}
        self.space.activate(arch, check=False)
        xv, yv = ctx.held_out(step)
        with torch.no_grad(), ctx.autocast():
            reward = (ctx.net(xv).argmax(1) == yv).float().mean().item()
        self.baseline += (1 - self.config.baseline_decay) * (reward - self.baseline)
        log_p = sum(t.log_softmax(0)[arch[l]] for l, t in self.theta.items())
        (-(reward - self.baseline) * log_p).backward()  # ∇θ J = E[(R - b) ∇θ log p(a)]
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        ctx.log("reward", reward)
        loss, logits = ctx.loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach(), y

    def state_dict(self):
        return {"theta": {l: t.detach().clone() for l, t in self.theta.items()}, "opt": self.opt.state_dict(),
                "baseline": self.baseline}

    def load_state_dict(self, state):
        with torch.no_grad():
            for l, t in self.theta.items():
                t.copy_(state["theta"][l])
        self.opt.load_state_dict(state["opt"])
        self.baseline = state["baseline"]

    def final_arch(self):
        return {l: int(t.argmax()) for l, t in self.theta.items()}


def main(run_dir="runs/learned-sampling", steps=600, retrain_steps=300):
    from supernet import pipeline
    pipeline.train_supernet(run_dir, "digits", ["strategy.name=learned-sampling", f"supernet.steps={steps}"], force=True)
    pipeline.retrain(run_dir, overrides=[f"steps={retrain_steps}"], force=True)  # the exported arch, from scratch
    report = pipeline.evaluate(run_dir, force=True)
    print(f"learned-sampling: {report['arch']} -> test top-1 {report['top1']:.4f}")
    return report


if __name__ == "__main__":
    main()
