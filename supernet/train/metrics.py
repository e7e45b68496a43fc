"""Metrics: one JSON line per log step, mirrored to TensorBoard when it is installed."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..runtime.io import atomic_write


def accuracy(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[int]:
    """Number of correct predictions at each k (k is capped at the number of classes)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (B, k)
    hit = top.eq(target.view(-1, 1))
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():  # keep exactly what the resumed run had written by then
            keep = [json.dumps(r) for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write(self.path, lambda f: f.write("".join(l + "\n" for l in keep)))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.path.parent / "tb"))
            except Exception:  # tensorboard is optional
                self.writer = None

    def log(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line torn by a crash mid-append is skipped."""
    path = Path(path)
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
