"""Scoring candidates: BN recalibration on training batches, then top-1/top-5 error on the validation split.

The batches are materialised once per search, so every candidate is scored on exactly the same
images (the official code gave each candidate a different validation slice, OFF issue #4).

A generation is evaluated as a prefix tree. A model that lists its segments (``model.segments()``:
modules applied one after the other, each reading only the choices declared inside it and
earlier) lets candidates that agree on their first k segments share those segments' outputs. This is
exact: after recalibration, segment i's BN statistics depend only on the choices of segments <= i, and
in train mode a BN normalises with batch statistics, so segment i+1's recalibration input does not
depend on segment i's running statistics. The scores are bit-for-bit those of running every
candidate alone (tested, and checked again by ``python -m benchmarks``).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..arch.few_shot import routed
from ..nn import LayerChoice
from ..runtime.device import autocast
from ..train.metrics import accuracy

Batch = tuple[torch.Tensor, torch.Tensor]
# On CPU, batches are concatenated into one call only while its largest segment output stays under
# this. Measured on the 2-core VM with 16-image batches (4 recalibration, 2 validation), per
# candidate against one batch a call: 1.8x faster concatenated at 16 KB of segment output per image
# (ImageNet space at 32 px), 1.2x at 64 KB (64 px), 1.04x at 144 KB (96 px); 4-6% slower at
# 256 KB (CIFAR space at 32 px, even two batches a call) and up to 1.4x slower at 800 KB (224 px),
# where copying the activations costs more than the calls save.
CPU_GROUP_BYTES = 6 * 2**20


def _bns(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _path_bns(module: nn.Module) -> list[nn.Module]:
    """The BatchNorms that run under the current decisions: of a LayerChoice with one active
    candidate, only that candidate's; of a few-shot supernet, only its part's."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return [module]
    if (part := routed(module)) is not None:
        return _path_bns(part)
    if isinstance(module, LayerChoice) and module.weights is None and isinstance(module.active, int):
        return _path_bns(module[module.active])
    return [m for child in module.children() for m in _path_bns(child)]


@contextlib.contextmanager
def _recalibrating(model: nn.Module) -> Iterator[list[nn.Module]]:
    """``model`` in eval mode with every BatchNorm on a cumulative average (momentum=None); yields
    the BatchNorms. Modes and momenta are restored on exit."""
    bns = _bns(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in bns]
    try:
        model.eval()
        for m in bns:
            m.momentum = None
        yield bns
    finally:
        for m, training in modes:
            m.training = training
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Sequence[Batch], device: torch.device | None = None) -> None:
    """Reset every BatchNorm's statistics and re-estimate them on ``batches``.

    BN layers run in train mode with a cumulative average (momentum=None), everything else in
    eval mode (dropout off), with no gradients. Modes and momenta are restored afterwards.
    """
    with _recalibrating(model) as bns:
        for m in bns:
            m.reset_running_stats()
            m.train()
        for x, _ in batches:
            model(x if device is None else x.to(device, non_blocking=True))


class CandidateEvaluator:
    """``evaluator(arch)`` or ``evaluator.evaluate_many(archs)`` -> ``{"top1_err", "top5_err"}``.

    Works on the supernet with inherited weights, never a copy; each candidate overwrites the BN
    statistics of the layers it uses (only those: the other candidates' BNs are not touched).
    Four things make it fast, all checked against the plain per-candidate loop by the tests and
    by ``python -m benchmarks``:

    - the batches are prepared once, not re-read and re-augmented per candidate;
    - a generation is a prefix tree (see the module docstring);
    - batches run concatenated, up to ``group_images`` images per call, with every BatchNorm
      normalising each original batch by that batch's own statistics and averaging them in order,
      exactly as if the batches ran one at a time (convs and eval-mode layers see each image
      alone, so only the per-call overhead changes), in channels_last layout, which is about twice
      as fast for inference on CPU;
    - when the recalibration and validation images fit in one call, they share it: each BN first
      estimates its statistics on the recalibration images, then normalises the validation images
      with them (half the op calls of separate passes).

    Args:
        model: the trained supernet.
        recal_batches: training batches for BN recalibration (same for every candidate).
        val_batches: validation batches the candidate is scored on (same for every candidate).
        prepare: turns stored images into network input, per group of images as they are used,
            e.g. ``Compact(dataset).finish`` so that the batches can be kept as uint8 (a quarter
            of the memory; ``supernet.data.loader.Compact``). ``None``: they are network input.
        cache_mb: memory for the prepared images (when ``prepare`` is given) and the shared segment
            outputs of the prefix tree. What does not fit is prepared or run per candidate.
        group_images: images per concatenated call (1 = one original batch per call). ``None``:
            256 on CUDA; on CPU as many as keep a call's largest segment output under 6 MB (at most
            256), since there copying large activations costs more than the calls it saves.
        channels_last: run 4-D inputs in channels_last layout.
    """

    def __init__(self, model: nn.Module, recal_batches: Sequence[Batch], val_batches: Sequence[Batch],
                 device: torch.device | str = "cpu", amp: bool = True, cache_mb: float = 2048,
                 group_images: Optional[int] = None, channels_last: bool = True,
                 prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.space = SearchSpace(model)
        self.amp = amp
        layout = (lambda x: x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x) \
            if channels_last else (lambda x: x)
        self.layout = layout
        self.prepare = None if prepare is None else (lambda x: layout(prepare(x)))  # layout: a no-op unless prepare changed it
        self.val_y = torch.cat([y for _, y in val_batches]).to(self.device) if val_batches else torch.zeros(0)
        self.n_val = len(self.val_y)
        if self.n_val == 0:
            raise ValueError("the search needs at least one validation image")
        if hasattr(model, "stages") and not hasattr(model, "segments"):  # the protocol's old name
            raise ValueError(f"{type(model).__name__} defines stages(), which the evaluator now calls segments(); "
                             f"rename it")
        self.segments = list(model.segments()) if hasattr(model, "segments") else [model]  # a space may list them
        self.segment_labels = _segment_labels(self.space, self.segments)
        self.cache_bytes = cache_mb * 2**20
        self.group_images = group_images
        # Grouped on first use (_setup), when a candidate is active and its segment sizes are known.
        self._batches = ([x for x, _ in recal_batches], [x for x, _ in val_batches])
        self.recal: list = []  # (images of one call, the original batch sizes in it)
        self.val: list = []
        self.n_tail = 0  # validation images riding at the end of the one recalibration call
        self.shared_depth: Optional[int] = None  # segments whose outputs are cached
        self.segment_runs = 0  # segment evaluations done (a candidate alone costs len(self.segments))
        self._chunks = _Chunks()  # read by the BatchNorms' forward during evaluate_many
        self._bns_of: dict = {}  # (segment, its key) -> the BatchNorms on that path

    def __call__(self, arch: Arch) -> dict:
        return self.evaluate_many([arch])[0]

    @torch.no_grad()
    def evaluate_many(self, archs: Sequence[Arch], on_result: Optional[Callable[[int, dict], None]] = None) -> list[dict]:
        """Scores of ``archs`` in their order; ``on_result(i, score)`` is called as each finishes."""
        archs = [self.space.validate(a) for a in archs]
        keys = [[tuple(tuple(v) if isinstance(v, list) else v for v in (a[label] for label in labels))
                 for labels in self.segment_labels] for a in archs]  # InputChoice values are lists: hashable keys
        scores: list = [None] * len(archs)
        path: list = []  # path[s] = (key of segment s, its recalibration outputs, its validation outputs)
        with _recalibrating(self.model) as bns:
            for m in bns:
                m.forward = _ChunkedBN(m, self._chunks)
            try:
                for i in sorted(range(len(archs)), key=keys.__getitem__):  # siblings become neighbours
                    scores[i] = self._evaluate_in_tree(archs[i], keys[i], path)
                    if on_result is not None:
                        on_result(i, scores[i])
            finally:
                for m in bns:
                    del m.forward
        return scores

    def _evaluate_in_tree(self, arch: Arch, key: list, path: list) -> dict:
        """Score ``arch``, reusing the outputs on ``path`` of the segments its ``key`` shares with the
        previous candidate, and leaving its own there for the next."""
        self.space.activate(arch, check=False)
        if self.shared_depth is None:
            self._setup()
        depth = 0
        while depth < len(path) and path[depth][0] == key[depth]:
            depth += 1
        del path[depth:]
        recal, val = (path[-1][1], path[-1][2]) if path else (self.recal, self.val)
        prepare = None if path else self.prepare  # the stored images need preparing; segment outputs do not
        for s in range(depth, self.shared_depth):
            recal, val = self._run(s, s + 1, key, recal, val, prepare, check=True)
            prepare = None
            path.append((key[s], recal, val))
        _, logits = self._run(len(path), len(self.segments), key, recal, val, prepare, check=False)
        return self._score(logits)

    def _run(self, first: int, end: int, key: list, recal: list, val: list, prepare: Optional[Callable],
             check: bool) -> tuple[list, list]:
        """Stages ``first .. end-1`` (decided by ``key``) over every group, each group first passed
        through ``prepare`` if given: recalibrate their BNs, then the validation outputs."""
        if first == end:
            return recal, val
        if prepare is None:
            prepare = _identity
        self.segment_runs += end - first
        net = self.segments[first] if end - first == 1 else nn.Sequential(*self.segments[first:end])
        bns = [m for s in range(first, end) for m in self._segment_bns(s, key[s])]
        for m in bns:
            m.reset_running_stats()
            m.training = True
        out = []
        for x, sizes in recal:
            self._chunks.sizes = sizes
            x = prepare(x)
            out.append((_checked(net, x) if check else net(x), sizes))
        self._chunks.sizes = None
        for m in bns:
            m.training = False
        if self.n_tail:  # the validation outputs were computed in the same call
            return out, [out[0][0][-self.n_tail:]]
        with autocast(self.device, self.amp):
            val = [_checked(net, x) if check else net(x) for x in map(prepare, val)]
        return out, val

    def _segment_bns(self, s: int, key: tuple) -> list[nn.Module]:
        """The BatchNorms segment ``s`` runs under decisions ``key``; the other candidates' are left alone."""
        bns = self._bns_of.get((s, key))
        if bns is None:
            bns = self._bns_of[(s, key)] = _path_bns(self.segments[s])
        return bns

    def _score(self, logits: list) -> dict:
        top1, top5 = accuracy(torch.cat(logits).float(), self.val_y)
        return {"top1_err": 1 - top1 / self.n_val, "top5_err": 1 - top5 / self.n_val}

    def _setup(self) -> None:
        """Group the batches into calls and size the prefix-tree cache, from the segment outputs of
        one image under the active candidate (eval mode, so side-effect free: eval-mode BN only
        reads its statistics)."""
        recal, val = self._batches
        x = (recal or val)[0][:1].to(self.device)
        x = x if self.prepare is None else self.prepare(x)
        in_bytes, out_bytes = x.element_size() * x.numel(), []  # per image: the input, each segment's output
        for segment in self.segments:
            x = segment(x)
            out_bytes.append(x.element_size() * x.numel())
        limit = self.group_images or (256 if self.device.type == "cuda" else
                                      max(1, min(256, CPU_GROUP_BYTES // max(out_bytes))))
        recal = _groups(recal, limit, self.device)
        val = [x for x, _ in _groups(val, limit, self.device)]
        n_images = sum(len(x) for x, _ in recal) + sum(len(x) for x in val)
        total = 0  # bytes of the cache
        if self.prepare is not None and in_bytes * n_images <= self.cache_bytes:  # prepared once, not per candidate
            recal = [(self.prepare(x), sizes) for x, sizes in recal]
            val = [self.prepare(x) for x in val]
            total, self.prepare = in_bytes * n_images, None
        # Recalibration and validation as ONE call per segment, the validation images at the end:
        # half the op calls where per-call overhead dominates. It needs all recalibration images
        # in that call (every BN takes its statistics from them before it normalises the
        # validation images) and one precision for both (no bf16 autocast).
        if (len(recal) == 1 and len(val) == 1 and len(recal[0][0]) + len(val[0]) <= limit
                and not (self.amp and self.device.type == "cuda")):
            recal, val, self.n_tail = [(torch.cat([recal[0][0], val[0]]), recal[0][1])], [], len(val[0])
        self.recal = [(self.layout(x), sizes) for x, sizes in recal]
        self.val = [self.layout(x) for x in val]
        self._chunks.tail, self._batches = self.n_tail, None
        self.shared_depth = 0
        for b in out_bytes[:-1]:  # the last segment's outputs (logits) are never shared
            total += b * n_images
            if total > self.cache_bytes:
                break
            self.shared_depth += 1


class _Chunks:
    sizes: Optional[list[int]] = None  # the original batch sizes inside the current call
    tail = 0  # images after those: validation images, normalised in eval mode


class _ChunkedBN:
    """A BatchNorm's forward over concatenated batches: in train mode each original batch is
    normalised by its own statistics and the running averages take them in order, the same
    arithmetic as running the batches one by one; then the ``tail`` images are normalised in
    eval mode with the statistics just estimated."""

    def __init__(self, bn: nn.Module, chunks: _Chunks):
        self.bn, self.chunks, self.forward = bn, chunks, type(bn).forward

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sizes, tail = self.chunks.sizes, self.chunks.tail
        if not self.bn.training or sizes is None or (len(sizes) == 1 and not tail):
            return self.forward(self.bn, x)
        parts = x.split(sizes + [tail] if tail else sizes)
        out = [self.forward(self.bn, part) for part in parts[:len(sizes)]]
        if tail:
            self.bn.training = False
            out.append(self.forward(self.bn, parts[-1]))
            self.bn.training = True
        return torch.cat(out)


def _groups(batches: list, limit: int, device) -> list[tuple[torch.Tensor, list[int]]]:
    """Consecutive batches concatenated into groups of at most ``limit`` images (at least one batch)."""
    out, cur, n = [], [], 0
    for x in batches:
        if cur and n + len(x) > limit:
            out.append(cur)
            cur, n = [], 0
        cur.append(x)
        n += len(x)
    if cur:
        out.append(cur)
    return [(torch.cat(g).to(device), [len(c) for c in g]) for g in out]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _checked(segment: nn.Module, x: torch.Tensor) -> torch.Tensor:
    version = x._version
    out = segment(x)
    if x._version != version:
        raise RuntimeError(f"segment {type(segment).__name__} changed its input in place; the prefix-tree "
                           "evaluator shares segment outputs between candidates, so segments must not do that "
                           "(make the first op of the segment out of place)")
    return out


def _segment_labels(space: SearchSpace, segments: list[nn.Module]) -> list[list[str]]:
    """The labels declared in each segment; labels declared outside every segment count from segment 0."""
    labels = [SearchSpace(segment).labels for segment in segments]
    inside = {label for ls in labels for label in ls}
    labels[0] = [label for label in space.labels if label not in inside] + labels[0]
    return labels
