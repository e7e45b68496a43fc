"""Scenes for bad-input rows that need more than an argv: damaged or hand-edited files.

Each function prepares files under the temp folder ``t`` or the run ``r`` and returns the argv.
"""
import argparse
import json
from pathlib import Path

from supernet.train import load_checkpoint, save_checkpoint

A4 = {f"layer_{i}": 0 for i in range(4)} | {f"channel_{i}": 0 for i in range(4)}


def write(path, content):
    """Write ``content`` (str or bytes) to ``path`` and return the path."""
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def deep_arch(t):
    return write(t / "deep.json", "[" * 100_000 + "]" * 100_000)


def latin1_arch(t):
    return write(t / "latin1.json", json.dumps(A4).replace('"layer_0"', '"layer_0\u00e9"').encode("latin-1"))


def broken_yaml(t):
    return write(t / "broken.yaml", "data:\n  name: synthetic\nsupernet:\n  steps: 4: 5\n")  # a colon too many


def latin1_yaml(t):
    return write(t / "latin1.yaml", "data:\n  name: synth\u00e9tic\n".encode("latin-1"))


def empty_yaml(t):
    return write(t / "empty.yaml", "")


def _rewrite_checkpoints(r, change):
    for p in sorted((r / "supernet").glob("*.pt")):
        save_checkpoint(p, change({k: v for k, v in load_checkpoint(p).items() if k != "format_version"}))


def checkpoints_without_meta(t, r):
    """Every supernet checkpoint keeps a valid header and checksum, but has no 'meta'."""
    _rewrite_checkpoints(r, lambda s: {k: v for k, v in s.items() if k != "meta"})
    return ["search", "--run-dir", r, "--force"]


def checkpoints_with_objects(t, r):
    """Every supernet checkpoint holds a Python object that weights_only loading refuses."""
    _rewrite_checkpoints(r, lambda s: {**s, "extra": argparse.Namespace(evil=True)})
    return ["search", "--run-dir", r, "--force"]


def checkpoints_truncated(t, r):
    for p in (r / "supernet").glob("*.pt"):
        p.write_bytes(p.read_bytes()[:1000])
    return ["search", "--run-dir", r, "--force"]


def state_without_key(t, r, key="topk"):
    path = r / "search" / "state.json"
    state = json.loads(path.read_text())
    del state[key]
    path.write_text(json.dumps(state))
    return ["search", "--run-dir", r, "--resume", "generations=2"]


def other_latency_table(tmp_path: Path) -> Path:
    """A latency table measured (quickly) for another model than the run's: width_mult 0.5."""
    from supernet.cost.timing import build_table
    from supernet.spaces import create
    options = {"width_mult": 0.5, "stage_repeats": [1, 1, 1, 1], "channel_search": True, "num_classes": 4,
               "input_size": 16}
    table = build_table(create("shufflenet-cifar", **options), runs=2, warmup=0, retries=0, space="shufflenet-cifar",
                        options=options, progress=False)
    return table.save(tmp_path / "other-latency.json")


def run_dir_link_loop(t):
    """A --run-dir that is a symbolic link in a loop (a -> b -> a)."""
    import os
    os.symlink(t / "loop-b", t / "loop-a")
    os.symlink(t / "loop-a", t / "loop-b")
    return ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "loop-a"]
