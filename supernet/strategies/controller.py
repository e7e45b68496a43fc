"""The ENAS controller: an LSTM policy over a space's labels (general_controller.py and
micro_controller.py of the ENAS code, https://github.com/melodyguan/enas).

It makes one decision per label, in label order, one LSTM step each: a ``LayerChoice`` or
``ChannelChoice`` is a softmax over a linear map of the LSTM output, with logits c·tanh(l / T)
(c divided by ``op_tanh_reduce`` for ops); an ``InputChoice(n_chosen=k)`` takes k steps, each
picking one more input by attention over the inputs' anchors; an ``InputChoice(n_chosen=None)``
(ENAS' skip connections) takes one step and one sigmoid per input by the same attention. An
input's anchor is the LSTM output of the decision the space names in ``InputChoice.anchors`` (the
layer or node that produces it); an input with no such decision (a cell's own inputs, or any input
of a model that names none) has a learned anchor.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..nn.choices import InputChoice, LayerChoice
from ..runtime.units import human_count


class Sample(NamedTuple):
    archs: list[Arch]
    nll: torch.Tensor           # (B,) −log p(a), differentiable
    entropy: torch.Tensor       # (B,) entropy of every decision's distribution, summed (detached)
    skip_penalty: torch.Tensor  # (B,) mean over skip labels of KL(p_skip ‖ target)
    skip_density: Optional[float]  # share of skip inputs chosen, over the batch (None: no skip choices)


class Controller(nn.Module):
    """The ENAS LSTM policy over a space's labels (see the module docstring)."""

    def __init__(self, space: SearchSpace, lstm_size: int = 64, lstm_layers: int = 1, tanh_constant: Optional[float] = 1.5,
                 op_tanh_reduce: float = 2.5, temperature: Optional[float] = None, skip_target: float = 0.4):
        super().__init__()
        self.tanh_constant, self.op_tanh_reduce, self.temperature = tanh_constant, op_tanh_reduce, temperature
        h = lstm_size
        self.fields = []  # (label, kind, n, k, is_op, anchor sources)
        self.soft, self.emb, self.start = nn.ModuleDict(), nn.ModuleDict(), nn.ParameterDict()
        for i, label in enumerate(space.labels):
            c = space.choice(label)
            if isinstance(c, InputChoice):
                anchors = c.anchors or [None] * c.n_candidates
                if len(anchors) != c.n_candidates:
                    raise ValueError(f"InputChoice '{label}' names {len(anchors)} anchors for {c.n_candidates} inputs")
                sources, n_start = [], 0
                for a in anchors:
                    if a is None:
                        sources.append(("start", n_start))
                        n_start += 1
                    elif a in space.labels and space.labels.index(a) < i:
                        sources.append(("label", space.labels.index(a)))
                    else:
                        raise ValueError(f"InputChoice '{label}': anchor {a!r} is not a label decided before it")
                if n_start:
                    self.start[str(i)] = nn.Parameter(torch.empty(n_start, h))
                kind = "subset" if c.n_chosen is None else "pick"
                self.fields.append((label, kind, c.n_candidates, c.n_chosen, False, sources))
            else:
                self.soft[str(i)] = nn.Linear(h, c.n_options, bias=False)
                self.emb[str(i)] = nn.Embedding(c.n_options, h)
                self.fields.append((label, "cat", c.n_options, 1, isinstance(c, LayerChoice), None))
        self.lstm = nn.ModuleList(nn.LSTMCell(h, h) for _ in range(lstm_layers))
        self.g_emb = nn.Parameter(torch.empty(1, h))
        self.w_key, self.w_query = nn.Linear(h, h, bias=False), nn.Linear(h, h, bias=False)  # w_attn_1, w_attn_2
        self.v_attn = nn.Linear(h, 1, bias=False)
        self.register_buffer("skip_targets", torch.tensor([1 - skip_target, skip_target]))

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for p in self.parameters():  # the official initialiser: U(-0.1, 0.1)
                p.copy_(torch.rand(p.shape, generator=generator) * 0.2 - 0.1)

    def _logits(self, logits: torch.Tensor, is_op: bool) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            c = self.tanh_constant / (self.op_tanh_reduce if is_op else 1.0)
            logits = c * torch.tanh(logits)
        return logits

    @staticmethod
    def _draw(probs: torch.Tensor, generator: torch.Generator, greedy: bool) -> torch.Tensor:
        if greedy:
            return probs.argmax(-1)
        flat = probs.detach().reshape(-1, probs.shape[-1]).float().cpu()
        return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1]).to(probs.device)

    def sample(self, batch: int, generator: torch.Generator, greedy: bool = False) -> Sample:
        """``batch`` architectures, one row of the LSTM each."""
        dev = self.g_emb.device
        hs = [torch.zeros(batch, self.g_emb.shape[1], device=dev) for _ in self.lstm]
        cs = [torch.zeros_like(t) for t in hs]
        inp = self.g_emb.expand(batch, -1)
        nll = torch.zeros(batch, device=dev)
        entropy = torch.zeros(batch, device=dev)
        penalties, skip_chosen, skip_total = [], 0, 0
        anchors: dict[int, torch.Tensor] = {}  # field index -> its LSTM output (B, H)
        values: list = []

        def lstm_step(x):
            for j, cell in enumerate(self.lstm):
                hs[j], cs[j] = cell(x, (hs[j], cs[j]))
                x = hs[j]
            return x

        for i, (label, kind, n, k, is_op, sources) in enumerate(self.fields):
            if kind == "cat":
                top = lstm_step(inp)
                logits = self._logits(self.soft[str(i)](top), is_op)  # (B, n)
                logp = logits.log_softmax(-1)
                idx = self._draw(logp.exp(), generator, greedy)
                nll = nll - logp.gather(1, idx[:, None])[:, 0]
                entropy = entropy - (logp.exp() * logp).sum(-1).detach()
                inp = self.emb[str(i)](idx)
                values.append(idx.tolist())
                anchors[i] = top
                continue
            anchor = torch.stack([anchors[s] if where == "label" else self.start[str(i)][s].expand(batch, -1)
                                  for where, s in sources])  # (n, B, H)
            keys = self.w_key(anchor)
            if kind == "pick":  # k steps, one more distinct input each
                taken = torch.zeros(batch, n, dtype=torch.bool, device=dev)
                for _ in range(k):
                    top = lstm_step(inp)
                    q = self.v_attn(torch.tanh(keys + self.w_query(top)))[..., 0].t()  # (B, n)
                    logp = self._logits(q, False).masked_fill(taken, float("-inf")).log_softmax(-1)
                    idx = self._draw(logp.exp(), generator, greedy)
                    nll = nll - logp.gather(1, idx[:, None])[:, 0]
                    entropy = entropy - (logp.exp() * logp.masked_fill(taken, 0.0)).sum(-1).detach()
                    taken = taken.scatter(1, idx[:, None], True)
                    inp = anchor[idx, torch.arange(batch, device=dev)]
                values.append([row.tolist() for row in taken.nonzero()[:, 1].split(k)])  # sorted per row
            else:  # one sigmoid per input: softmax over [−q, q], as the code samples
                top = lstm_step(inp)
                q = self.v_attn(torch.tanh(keys + self.w_query(top)))[..., 0].t()  # (B, n)
                logp = self._logits(torch.stack([-q, q], -1), False).log_softmax(-1)  # (B, n, 2)
                p = logp.exp()
                on = self._draw(p, generator, greedy)  # (B, n) in {0, 1}
                nll = nll - logp.gather(2, on[..., None])[..., 0].sum(-1)
                entropy = entropy - (p * logp).sum((-1, -2)).detach()
                penalties.append((p * (logp - self.skip_targets.log())).sum((-1, -2)))  # KL per layer
                skip_chosen += int(on.sum())
                skip_total += on.numel()
                inp = (on.t().float()[..., None] * anchor).sum(0) / (1.0 + on.sum(-1, keepdim=True).float())
                values.append([row.nonzero()[:, 0].tolist() for row in on])
            anchors[i] = top
        archs = [{f[0]: v[b] for f, v in zip(self.fields, values)} for b in range(batch)]
        penalty = torch.stack(penalties).mean(0) if penalties else torch.zeros(batch, device=dev)
        return Sample(archs, nll, entropy, penalty, skip_chosen / skip_total if skip_total else None)


def controller_memory(space: SearchSpace, c, batch_bytes: int) -> list[tuple[int, str, str]]:
    """ENAS's own allocations, from its settings ``c`` (an ``ENAS.Config``) before anything is built:
    the controller with its gradients and Adam state, held all run, and beside it the largest of
    the architectures sampled at once (a phase, a controller step, the final choice). The sampling
    sizes follow ``Controller.sample``, measured on the enas-macro and enas-micro spaces within 10%.
    See ``Strategy.memory_needs``."""
    h, layers = c.lstm_size, c.lstm_layers
    with torch.device("meta"):  # its exact shapes, nothing allocated
        params = sum(p.numel() for p in Controller(space, h, layers).parameters())
    controller = params * 4 * 4  # float32 weights, gradients and Adam's two moments
    choices = [space.choice(label) for label in space.labels]
    inputs = [ch.n_candidates for ch in choices if isinstance(ch, InputChoice)]
    # One sampled architecture: the LSTM output kept per label, the LSTM state, the gates and the
    # attention over the largest input choice, and its values as Python objects.
    floats = h * (len(choices) + 2 * layers + 4 + 3 * max(inputs, default=0))
    sample = 4 * floats + 80 * len(choices)
    graph = 4 * 10 * layers * h * len(choices)  # what autograd keeps per label for a controller step
    export = (c.export_samples or 100) if c.export == "best" else 1
    held = (c.export_batches or 1) * batch_bytes if c.export == "best" else 0
    by_batches = held > export * sample and c.export_batches is not None
    peaks = [(c.train_steps * sample, f"strategy.train_steps={c.train_steps:,}",
              f"the {c.train_steps:,} architectures of a phase, sampled at once"),
             (c.ctrl_aggregate * (sample + graph), f"strategy.ctrl_aggregate={c.ctrl_aggregate:,}",
              f"{c.ctrl_aggregate:,} architectures sampled at once with their gradients"),
             (export * sample + held, f"strategy.export_batches={c.export_batches:,}" if by_batches else
              f"strategy.export_samples={export:,}",
              f"{export:,} architectures sampled at once to choose the final one, scored on "
              f"{c.export_batches or 1:,} held-out batches")]
    largest = max(peaks, key=lambda n: n[0])
    setting = f"strategy.lstm_size={h}" + (f", strategy.lstm_layers={layers}" if layers > 1 else "")
    return [(controller, setting, f"the ENAS controller ({human_count(params)} parameters) with its gradients and "
                                  f"Adam state"),
            (controller + largest[0], largest[1], largest[2])]
