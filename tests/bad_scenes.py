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


# --- latency tables and other JSON handed to the latency code --------------------------------------------
def table_json(**edit) -> dict:
    """A small, well-formed latency table for shufflenet-cifar (two groups), with ``edit`` applied:
    ``ms`` (the first entry's latency), ``overhead_ms``, ``spread`` (the first entry's)."""
    target = {"space": "shufflenet-cifar", "options": {}, "input_shape": [3, 16, 16], "fingerprint": "0" * 16,
              "backend": "torch", "device": "cpu", "device_name": "cpu", "threads": 1, "batch": 1,
              "versions": None}
    entries = [[[i], 0.5 + i, 0.01] for i in range(4)]
    entries[0][1], entries[0][2] = edit.get("ms", 0.5), edit.get("spread", 0.01)
    return {"format": "supernet-latency-table", "version": 1, "target": target,
            "settings": {"runs": 2, "warmup": 0, "max_spread": 0.2, "retries": 0},
            "overhead_ms": edit.get("overhead_ms", 0.0), "check": None,
            "groups": [{"labels": ["layer_0"], "gate": None, "entries": entries},
                       {"labels": [], "gate": None, "entries": [[[], 1.0, 0.0]]}]}


def bad_table(t, name="bad-latency.json", **edit) -> Path:
    """A latency table file whose numbers ``edit`` sets (json writes NaN and Infinity as such)."""
    return write(t / name, json.dumps(table_json(**edit)))


def deep_table(t) -> Path:
    return write(t / "deep-latency.json", "[" * 100_000 + "]" * 100_000)


def huge_table(t) -> Path:
    """A 2 GB latency table that takes no disk space (a sparse file): refused by its size alone."""
    path = t / "huge-latency.json"
    with open(path, "wb") as f:
        f.truncate(2 * 10 ** 9)
    return path


def deep_state(t, r):
    write(r / "search" / "state.json", "[" * 100_000 + "]" * 100_000)
    return ["search", "--run-dir", r, "--resume", "generations=2"]


def huge_state(t, r):
    with open(r / "search" / "state.json", "r+b") as f:
        f.truncate(2 * 10 ** 9)
    return ["search", "--run-dir", r, "--resume", "generations=2"]


def darts_table_for_proxyless(t):
    """A DARTS config, a latency table measured for its supernet (quickly), and the command that
    trains it with Proxyless: the table's gated groups (cell edges) are what Proxyless refuses."""
    import yaml

    from supernet.cli import main

    cfg = {"data": {"name": "synthetic", "image_size": 8, "synthetic_train": 32, "synthetic_test": 16,
                    "synthetic_classes": 4, "val_per_class": 2},
           "space": {"name": "darts", "options": {"channels": 2, "layers": 2}},
           "supernet": {"steps": 1, "batch_size": 8, "progress": False}}
    config = write(t / "darts.yaml", yaml.safe_dump(cfg))
    table = t / "darts-latency.json"
    assert main([str(a) for a in ("latency", "--config", config, "--out", table, "--runs", 2, "--warmup", 0,
                                  "--retries", 0, "--quiet")]) == 0
    return ["train-supernet", "--config", config, "--run-dir", t / "new", "strategy.name=proxyless",
            f"latency.table={table}"]


def fifo_arch(t):
    """A named pipe where an architecture file is expected: opening it would wait for a writer."""
    import os
    path = t / "arch.fifo"
    os.mkfifo(path)
    return path


def huge_arch(t):
    """A sparse 100 MB file: far beyond any architecture, and nothing written to disk."""
    path = t / "huge.json"
    with path.open("wb") as f:
        f.truncate(100 * 10 ** 6)
    return path
