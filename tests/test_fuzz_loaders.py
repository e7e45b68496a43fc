"""Every loader of a file a user hands in, fed mutated and truncated copies of a valid file: the
command either works or exits 2 with one line and no traceback, and a refused command leaves the
run directory as it was. Mutations are seeded: structural ones (a value replaced by another type,
a non-finite or negative number, a key removed) and byte-level ones (truncation, a deleted span,
a flipped byte)."""
import json
import random
import shutil

import pytest
import torch
import yaml

from supernet.cli import main
from supernet.train import load_checkpoint, save_checkpoint

from .strategies.standin import standin_table_file
from .test_bad_input import snapshot, trained  # noqa: F401  (the fixture)

ODD_VALUES = [None, -1, 0, 1e308, float("nan"), float("inf"), -float("inf"), "x", "", [], {}, [[[]]], True,
              10**30, -0.0, "NaN"]
A4 = {f"layer_{i}": 1 for i in range(4)} | {f"channel_{i}": 3 for i in range(4)}
N = 12  # mutations per loader and kind


def paths(tree, prefix=()):
    """Every path to a value in a JSON/YAML tree (dict keys and list indices)."""
    yield prefix
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        yield from paths(v, prefix + (k,))


def mutate_tree(tree, rng: random.Random):
    """A deep copy of ``tree`` with one value replaced by an odd one, or one key removed."""
    tree = json.loads(json.dumps(tree))
    target = rng.choice([p for p in paths(tree) if p])
    parent = tree
    for k in target[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[target[-1]]
    else:
        parent[target[-1]] = rng.choice(ODD_VALUES)
    return tree


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    kind = rng.choice(["truncate", "delete", "flip"])
    if kind == "truncate":
        return data[:i]
    if kind == "delete":
        return data[:i] + data[i + rng.randrange(1, 20):]
    return data[:i] + bytes([rng.choice(b'{}[]":,0-9e.xN\n\x00\xff')]) + data[i + 1:]


def dump_json(tree) -> bytes:
    return json.dumps(tree, allow_nan=True).encode()


def dump_yaml(tree) -> bytes:
    return yaml.safe_dump(tree).encode()


def variants(data: bytes, parse, dump, seed: int):
    rng = random.Random(seed)
    tree = parse(data)
    return [dump(mutate_tree(tree, rng)) for _ in range(N)] + [mutate_bytes(data, rng) for _ in range(N)]


def works_or_one_line(capsys, argv, run=None):
    before = snapshot(run) if run is not None else None
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        if run is not None:
            assert snapshot(run) == before
    return code


@pytest.mark.slow
def test_architecture_files(tmp_path, capsys):
    good = json.dumps(A4).encode()
    for i, data in enumerate(variants(good, json.loads, dump_json, seed=1)):
        path = tmp_path / f"arch-{i}.json"
        path.write_bytes(data)
        works_or_one_line(capsys, ["info", "shufflenet-cifar", "stage_repeats=[1,1,1,1]", "channel_search=true",
                                   "--arch", path])


@pytest.mark.slow
def test_latency_tables(trained, tmp_path, capsys):  # noqa: F811
    root, run = trained
    good = standin_table_file(run / "config.yaml", tmp_path / "good.json").read_bytes()
    info = ["info", "shufflenet-cifar", "width_mult=0.25", "stage_repeats=[1,1,1,1]", "channel_search=true",
            "num_classes=4", "input_size=16"]
    assert works_or_one_line(capsys, info + ["--latency-table", tmp_path / "good.json"]) == 0
    for i, data in enumerate(variants(good, json.loads, dump_json, seed=2)):
        path = tmp_path / f"table-{i}.json"
        path.write_bytes(data)
        works_or_one_line(capsys, info + ["--latency-table", path])


def test_search_states(trained, tmp_path, capsys):  # noqa: F811
    root, trained_run = trained
    good = (trained_run / "search" / "state.json").read_bytes()
    for i, data in enumerate(variants(good, json.loads, dump_json, seed=3)):
        run = tmp_path / f"run-{i}"
        shutil.copytree(trained_run, run)
        (run / "search" / "state.json").write_bytes(data)
        works_or_one_line(capsys, ["search", "--run-dir", run, "--resume", "progress=false"], run)
        shutil.rmtree(run)


def test_configs(trained, tmp_path, capsys):  # noqa: F811
    root, _ = trained
    good = (root / "tiny.yaml").read_bytes()
    for i, data in enumerate(variants(good, yaml.safe_load, dump_yaml, seed=4)):
        path = tmp_path / f"config-{i}.yaml"
        path.write_bytes(data)
        works_or_one_line(capsys, ["train-supernet", "--config", path, "--run-dir", tmp_path / f"new-{i}", "steps=1",
                                   "data.synthetic_train=32", "progress=false"])


def _edits(state: dict, rng: random.Random):
    """A checkpoint's state with one entry removed, retyped, or one tensor reshaped."""
    state = dict(state)
    key = rng.choice(sorted(state))
    roll = rng.random()
    if roll < 0.3:
        del state[key]
    elif roll < 0.6 or not isinstance(state[key], dict) or not state[key]:
        state[key] = rng.choice(["x", 3, None, [], {}])
    else:
        inner = dict(state[key])
        k = rng.choice(sorted(inner, key=str))
        v = inner[k]
        inner[k] = v.reshape(-1)[:max(v.numel() - 1, 0)] if isinstance(v, torch.Tensor) else rng.choice(["x", None, -1])
        state[key] = inner
    return state


@pytest.mark.slow
def test_checkpoints(trained, tmp_path, capsys):  # noqa: F811
    root, trained_run = trained
    rng = random.Random(5)
    base = {k: v for k, v in load_checkpoint(trained_run / "supernet" / "last.pt").items() if k != "format_version"}
    raw = (trained_run / "supernet" / "last.pt").read_bytes()
    for i in range(2 * N):
        run = tmp_path / f"run-{i}"
        shutil.copytree(trained_run, run)
        crafted = _edits(base, rng) if i < N else mutate_bytes(raw, rng)
        for ck in (run / "supernet").glob("*.pt"):  # every one alike, as a fallback would find the same
            if i < N:
                save_checkpoint(ck, crafted)  # a valid header over a crafted state
            else:
                ck.write_bytes(crafted)
        works_or_one_line(capsys, ["train-supernet", "--run-dir", run, "--resume"], run)
        works_or_one_line(capsys, ["search", "--run-dir", run, "--force", "progress=false", "generations=1",
                                   "population=2", "topk=1", "mutations=0", "crossovers=0"], run)
        shutil.rmtree(run)
