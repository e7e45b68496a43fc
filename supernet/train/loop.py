"""The one training loop: supernet training under every strategy, retraining, the NNI-style trainers.

A step reads top-down: set the LR, move the batch, let the strategy decide and run its forwards
and backwards (``supernet/strategies``), check the loss, update the weights (only the sampled
path's for path-only strategies), log, checkpoint.

Everything a step uses is a function of (seed, step): the batch and its augmentation come from
``StepBatchSampler``, the LR from ``lr_at``, the strategy's decisions from (seed, step) or from
its own state, which is saved in every checkpoint with the torch RNG (dropout). So a resumed run
repeats the uninterrupted one exactly.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.loader import StepBatches, eval_loader, seeded, split_held_out, train_loader
from ..nn import SlicedBatchNorm2d
from ..runtime import dist
from ..runtime.device import autocast, memory_format, resolve_device
from ..runtime.progress import progress_bar
from ..runtime.seeding import mix_seed
from ..strategies.base import Plain, StepContext, Strategy
from .checkpoint import CheckpointError, prune_checkpoints, remove_stale_temp_files, rng_state, save_checkpoint
from .resume import changed_settings, restore
from .metrics import MetricsLog, accuracy
from .optim import build_optimizer, lr_at, set_lr, step_on_path


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is NaN); the last good checkpoint is kept."""


def fit(model: nn.Module, train_set, cfg, out_dir: Optional[Path], *, meta: Optional[dict] = None,
        run_config: Optional[dict] = None, may_change=(), strategy: Optional[Strategy] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        criterion: Optional[Callable] = None, resume: bool = False, force: bool = False, num_workers: int = 0,
        desc: str = "train", on_start: Optional[Callable[[], None]] = None,
        on_log: Optional[Callable[[dict], None]] = None) -> dict:
    """Train ``model`` for ``cfg.steps`` steps, checkpointing into ``out_dir``.

    Args:
        cfg: a ``TrainConfig``.
        meta: what the weights mean (space, options, strategy, arch); a resume must match it exactly.
        run_config: the settings that made the run (a plain dict; the pipeline's resolved config),
            saved inside every checkpoint. A resume must give the same, except at ``may_change``.
        may_change: dotted keys of ``run_config`` that a resume may change (logging, workers,
            progress), or prefixes ending in ``.`` for sections that do not decide this run.
        strategy: what happens inside a step (``supernet.strategies``); default ``Plain``, one
            forward and backward over every parameter (retraining a fixed network).
        optimizer: the weight optimizer; default ``build_optimizer(model, cfg.optim)`` with the LR
            set every step from ``cfg.optim``. A given optimizer keeps its own LR.
        criterion: ``criterion(logits, y)``; default cross-entropy with ``cfg.optim.label_smoothing``.
        resume: continue from ``out_dir/last.pt``.
        force: start over even if ``out_dir`` already holds a checkpoint.
        on_start: called once every check has passed, before anything is written (rank 0 only).
        on_log: called with each metrics record (rank 0 only).
        out_dir: None trains without writing anything (the NNI-style trainers' default).

    Under torchrun, each rank reads its share of every global batch (``cfg.batch_size`` is the
    global batch), and only rank 0 writes checkpoints, metrics and the progress bar.
    """
    strategy = strategy if strategy is not None else Plain()
    meta = {} if meta is None else meta
    run_config = {} if run_config is None else run_config
    out_dir = Path(out_dir) if out_dir is not None else None
    last = out_dir / "last.pt" if out_dir is not None else None
    device = dist.local_device(resolve_device(cfg.device))
    fmt = memory_format(cfg.channels_last)
    main = dist.is_main()
    if cfg.sync_bn and dist.world() > 1:
        model = _sync_batchnorm(model, device)
    model.to(device, memory_format=fmt)
    strategy.setup(device)
    own_lr = optimizer is None
    optimizer = optimizer if optimizer is not None else build_optimizer(model, cfg.optim)
    params = list(model.parameters())
    start = restore(out_dir, model, optimizer, strategy, meta, device, resume, force, cfg.seed,
                    lambda saved: changed_settings(saved, run_config, may_change) if run_config else [])
    if start > cfg.steps:
        raise CheckpointError(f"{out_dir} holds a checkpoint at step {start}, beyond steps={cfg.steps}; resume with "
                              f"steps >= {start}")
    net = model
    if dist.world() > 1 and not strategy.path_only:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if main and out_dir is not None:
        if on_start is not None:
            on_start()
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out_dir)
    write = main and out_dir is not None
    log = MetricsLog(out_dir / "metrics.jsonl", resume_step=start if resume else None) if write else NullLog()
    summary = {"steps": cfg.steps, "start_step": start}
    if start >= cfg.steps:
        log.close()
        return {**summary, "step": start, "already_done": True}

    train_set, held_out = split_held_out(seeded(train_set), strategy.held_out_fraction, cfg.seed)
    loader = train_loader(train_set, cfg.batch_size, cfg.seed, start, cfg.steps - start,
                          num_workers=num_workers, device=device, rank=dist.rank(), world_size=dist.world())
    held_out_batch = None if held_out is None else StepBatches(
        held_out, cfg.batch_size, mix_seed(cfg.seed, 1), device, dist.rank(), dist.world(), fmt)
    guard_divergence = criterion is None and cfg.diverged_at > 0  # the rule knows cross-entropy's chance level
    if criterion is None:
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    ctx = StepContext(net=net, criterion=criterion, optimizer=optimizer, device=device,
                      autocast=lambda: autocast(device, cfg.amp), held_out=held_out_batch, steps=cfg.steps)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    bar = progress_bar(total=cfg.steps, initial=start, desc=desc, disable=not (cfg.progress and main), leave=False)
    window = {"loss": 0.0, "correct": 0, "seen": 0, "images": 0, "t0": time.perf_counter()}
    lr = optimizer.param_groups[0]["lr"]
    try:
        for step, (x, y) in enumerate(loader, start):
            if own_lr:
                lr = lr_at(step, cfg.steps, cfg.optim)
                set_lr(optimizer, lr)
            x = x.to(device, non_blocking=True, memory_format=fmt if x.dim() == 4 else torch.preserve_format)
            y = y.to(device, non_blocking=True)
            loss, logits, targets = strategy.train_step(step, x, y, ctx)  # decisions, forwards, backwards
            local_loss = loss.item()
            loss_value = local_loss
            if dist.world() > 1:  # every rank stops at the same step if any rank's loss is bad
                loss_value = dist.all_reduce_sum([local_loss], device)[0] / dist.world()
            if not math.isfinite(loss_value):
                good = f"The last good checkpoint is {last}" if last is not None and last.exists() else \
                    "No checkpoint was saved yet"
                raise TrainingError(f"loss became {loss_value} at step {step}; stopped before updating the weights. "
                                    f"{good}; lower optim.lr or check the data")
            if strategy.path_only:  # (otherwise DDP averaged the gradients in the backward)
                dist.average_gradients(params)
            if cfg.grad_clip:  # parameters without a gradient (off the sampled path) are skipped
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if strategy.path_only:
                # A choice that was not sampled keeps grad None, so SGD's momentum and weight decay
                # leave it untouched (the official code sets those grads to None by hand);
                # step_on_path sets this path's grads back to None after its update.
                step_on_path(optimizer)
            else:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window["loss"] += local_loss * len(targets)
            window["correct"] += accuracy(logits, targets, (1,))[0]
            window["seen"] += len(targets)
            window["images"] += len(y)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                elapsed = time.perf_counter() - window["t0"]
                loss_sum, correct, seen, images = dist.all_reduce_sum(
                    [window["loss"], window["correct"], window["seen"], window["images"]], device)
                record = {"step": done, "loss": loss_sum / seen, "acc": correct / seen,
                          "lr": lr, "img_s": images / max(elapsed, 1e-9)}
                record.update({k: total / max(n, 1) for k, (total, n) in ctx.logs.items()})
                if guard_divergence:
                    _check_divergence(record["loss"], logits.shape[-1], cfg.diverged_at, done - cfg.log_every, done, last)
                ctx.logs.clear()
                log.log(record)
                if on_log is not None and main:
                    on_log(record)
                bar.set_postfix(refresh=False, loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.3f}", lr=f"{lr:.3g}",
                                img_s=f"{record['img_s']:.0f}")
                summary.update(record)
                window = {"loss": 0.0, "correct": 0, "seen": 0, "images": 0, "t0": time.perf_counter()}
            bar.update(1)  # after the log window's figures are set, so a progress line shows this step's
            if write and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "strategy": strategy.state_dict(), "step": done, "rng": rng_state(), "meta": meta,
                         "config": run_config}
                save_checkpoint(out_dir / f"step-{done}.pt", state)
                save_checkpoint(last, state)
                prune_checkpoints(out_dir, cfg.keep_checkpoints)
    finally:
        bar.close()
        log.close()
    dist.barrier()  # the last checkpoint is on disk before any rank moves on
    return {**summary, **strategy.summary()}


def _check_divergence(loss: float, classes: int, factor: float, first: int, end: int, last: Optional[Path]) -> None:
    """A finite loss that stays far above chance: cross-entropy at chance is log(classes), so a log
    window whose mean exceeds ``factor`` times that has diverged (the NaN check never sees it)."""
    limit = factor * math.log(max(classes, 2))
    if loss > limit:
        good = last if last is not None and last.exists() else None
        raise TrainingError(f"the loss diverged: {loss:.4g} on average over steps {max(first, 0)}..{end - 1}, above "
                            f"{factor:g} x log({classes} classes) = {limit:.3g}; stopped. "
                            f"{f'The last checkpoint is {good}' if good else 'No checkpoint was saved'}; lower optim.lr "
                            f"(or raise diverged_at, 0 turns the check off)")


class NullLog:
    """What ranks other than 0 log to."""

    def log(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type != "cuda":
        raise ValueError("sync_bn needs CUDA: PyTorch's SyncBatchNorm has no CPU kernel; set sync_bn=false")
    if any(isinstance(m, SlicedBatchNorm2d) for m in model.modules()):
        raise ValueError("sync_bn does not support channel search (sliced BatchNorm); set sync_bn=false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 256, device: str | torch.device = "cpu",
             num_workers: int = 0, amp: bool = True, channels_last: bool = False) -> dict:
    """Top-1 / top-5 accuracy (fractions) and mean loss over ``dataset`` in eval mode
    (``channels_last``: images in that memory format, as the model was trained)."""
    fmt = memory_format(channels_last)
    device = resolve_device(device) if isinstance(device, str) else device
    was_training = model.training
    model.eval()
    n = top1 = top5 = 0
    loss = 0.0
    try:
        for x, y in eval_loader(dataset, batch_size, num_workers=num_workers, device=device):
            x, y = x.to(device, memory_format=fmt if x.dim() == 4 else torch.preserve_format), y.to(device)
            with autocast(device, amp):
                logits = model(x).float()
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            c1, c5 = accuracy(logits, y)
            top1, top5, n = top1 + c1, top5 + c5, n + len(y)
    finally:
        model.train(was_training)
    return {"top1": top1 / n, "top5": top5 / n, "loss": loss / n, "n": n}
