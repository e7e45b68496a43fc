"""The training loop shared by supernet training and retraining.

Everything a step uses is a function of (seed, step): the batch and its augmentation come from
``StepBatchSampler``, the LR from ``lr_at``, and a supernet's path from the strategy's
``before_step``. The only other randomness (dropout) is the torch RNG, saved in each checkpoint.
So a resumed run repeats the uninterrupted one exactly.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.loader import eval_loader, train_loader
from .checkpoint import (CheckpointError, load_latest, prune_checkpoints, remove_stale_temp_files, rng_state,
                         save_checkpoint, set_rng_state, step_checkpoints)
from . import dist
from .device import autocast, memory_format, resolve_device
from .metrics import MetricsLog, accuracy, progress_bar
from .optim import build_optimizer, lr_at, set_lr, step_on_path


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is NaN); the last good checkpoint is kept."""


def diff_meta(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Each differing key (nested dicts by dotted path): 'options.width_mult: checkpoint has 0.25, now 0.5'."""
    out = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_meta(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint has {a!r}, now {b!r}")
    return out


def fit(model: nn.Module, train_set, cfg, out_dir: Path, *, meta: dict, run_config: dict,
        before_step: Optional[Callable[[int], None]] = None, resume: bool = False, force: bool = False,
        num_workers: int = 0, desc: str = "train", on_start: Optional[Callable[[], None]] = None,
        supernet: bool = False) -> dict:
    """Train ``model`` for ``cfg.steps`` steps, checkpointing into ``out_dir``.

    Args:
        cfg: a ``TrainConfig``.
        meta: what the weights mean (space, options, arch); a resume must match it exactly.
        run_config: the resolved config, saved inside every checkpoint.
        before_step: called with the step index before each forward (SPOS activates a path here).
        resume: continue from ``out_dir/last.pt``.
        force: start over even if ``out_dir`` already holds a checkpoint.
        on_start: called once every check has passed, before anything is written (rank 0 only).
        supernet: the used parameters change every step (SPOS). Under torchrun the gradients that
            exist are averaged across ranks (all train the same path); otherwise DDP wraps the model.

    Under torchrun, each rank reads its share of every global batch (``cfg.batch_size`` is the
    global batch), and only rank 0 writes checkpoints, metrics and the progress bar.
    """
    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    device = dist.local_device(resolve_device(cfg.device))
    fmt = memory_format(device, cfg.channels_last)
    main = dist.is_main()
    if cfg.sync_bn and dist.world() > 1:
        model = _sync_batchnorm(model, device)
    model.to(device, memory_format=fmt)
    optimizer = build_optimizer(model, cfg.optim)
    params = list(model.parameters())
    start = 0
    if resume:
        if not last.exists() and not step_checkpoints(out_dir):
            raise CheckpointError(f"nothing to resume: {last} does not exist (run without --resume to start)")
        state, path = load_latest(out_dir, map_location=device)
        problems = diff_meta(state["meta"], meta)
        if problems:
            raise CheckpointError(f"{path} was made for a different model: " + "; ".join(problems))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start = state["step"]
    elif (last.exists() or step_checkpoints(out_dir)) and not force:
        raise CheckpointError(f"{out_dir} already holds a checkpoint; pass --resume to continue it "
                              f"or --force to start over (or use a new --run-dir)")
    else:
        torch.manual_seed(cfg.seed)  # dropout
    net = model
    if dist.world() > 1 and not supernet:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if main:
        if on_start is not None:
            on_start()
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out_dir)
    log = MetricsLog(out_dir / "metrics.jsonl", resume_step=start if resume else None) if main else NullLog()
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    summary = {"steps": cfg.steps, "start_step": start}
    if start >= cfg.steps:
        log.close()
        return {**summary, "already_done": True}

    loader = train_loader(train_set, cfg.batch_size, cfg.seed, start, cfg.steps - start,
                          num_workers=num_workers, device=device, rank=dist.rank(), world_size=dist.world())
    model.train()
    optimizer.zero_grad(set_to_none=True)
    bar = progress_bar(total=cfg.steps, initial=start, desc=desc, disable=not (cfg.progress and main), leave=False)
    window = {"loss": 0.0, "correct": 0, "seen": 0, "t0": time.perf_counter()}
    try:
        for step, (x, y) in enumerate(loader, start):
            if before_step is not None:
                before_step(step)
            lr = lr_at(step, cfg.steps, cfg.optim)
            set_lr(optimizer, lr)
            x = x.to(device, non_blocking=True, memory_format=fmt)
            y = y.to(device, non_blocking=True)
            with autocast(device, cfg.amp):
                logits = net(x)
                loss = criterion(logits.float(), y)
            local_loss = loss.item()
            loss_value = local_loss
            if dist.world() > 1:  # every rank stops at the same step if any rank's loss is bad
                loss_value = dist.all_reduce_sum([local_loss], device)[0] / dist.world()
            if not math.isfinite(loss_value):
                raise TrainingError(f"loss became {loss_value} at step {step}; stopped before updating the weights. "
                                    f"The last good checkpoint is {last if last.exists() else 'none (none saved yet)'}; "
                                    f"lower optim.lr or check the data")
            if not supernet:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if supernet:
                # A choice that was not sampled keeps grad None, so SGD's momentum and weight decay
                # leave it untouched (the official code sets those grads to None by hand);
                # step_on_path sets this path's grads back to None after its update.
                dist.average_gradients(params)
                step_on_path(optimizer)
            else:
                optimizer.step()
            window["loss"] += local_loss * len(y)
            window["correct"] += accuracy(logits.detach(), y, (1,))[0]
            window["seen"] += len(y)
            bar.update(1)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                elapsed = time.perf_counter() - window["t0"]
                loss_sum, correct, seen = dist.all_reduce_sum([window["loss"], window["correct"], window["seen"]], device)
                record = {"step": done, "loss": loss_sum / seen, "acc": correct / seen,
                          "lr": lr, "img_s": seen / max(elapsed, 1e-9)}
                log.log(record)
                bar.set_postfix(refresh=False, loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.3f}", lr=f"{lr:.3g}",
                                img_s=f"{record['img_s']:.0f}")
                summary.update(record)
                window = {"loss": 0.0, "correct": 0, "seen": 0, "t0": time.perf_counter()}
            if main and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                         "rng": rng_state(), "meta": meta, "config": run_config}
                save_checkpoint(out_dir / f"step-{done}.pt", state)
                save_checkpoint(last, state)
                prune_checkpoints(out_dir, cfg.keep_checkpoints)
    finally:
        bar.close()
        log.close()
    dist.barrier()  # the last checkpoint is on disk before any rank moves on
    return summary


class NullLog:
    """What ranks other than 0 log to."""

    def log(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    from ..nn import SlicedBatchNorm2d
    if device.type != "cuda":
        raise ValueError("sync_bn needs CUDA: PyTorch's SyncBatchNorm has no CPU kernel; set sync_bn=false")
    if any(isinstance(m, SlicedBatchNorm2d) for m in model.modules()):
        raise ValueError("sync_bn does not support channel search (sliced BatchNorm); set sync_bn=false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 256, device: str | torch.device = "cpu",
             num_workers: int = 0, amp: bool = True) -> dict:
    """Top-1 / top-5 accuracy (fractions) and mean loss over ``dataset`` in eval mode."""
    device = resolve_device(device) if isinstance(device, str) else device
    was_training = model.training
    model.eval()
    n = top1 = top5 = 0
    loss = 0.0
    try:
        for x, y in eval_loader(dataset, batch_size, num_workers=num_workers, device=device):
            x, y = x.to(device), y.to(device)
            with autocast(device, amp):
                logits = model(x).float()
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            c1, c5 = accuracy(logits, y)
            top1, top5, n = top1 + c1, top5 + c5, n + len(y)
    finally:
        model.train(was_training)
    return {"top1": top1 / n, "top5": top5 / n, "loss": loss / n, "n": n}
