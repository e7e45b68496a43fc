"""A mixed-precision run through the stages: costs in every artifact, exact resume, clear refusals."""
import copy
import json
import shutil

import pytest
import torch
import yaml

from supernet.cli import main
from supernet.train import load_checkpoint

from ..test_pipeline import TINY

QUANT = {"weight_bits": [2, 4, 8], "act_bits": [2, 4, 8], "share": "block"}


def tiny_config(tmp_path, **sections):
    cfg = copy.deepcopy(TINY)
    cfg["space"]["quant"] = dict(QUANT)
    cfg["search"]["constraints"] = ["bitops<=400M"]
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / "mp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(*argv):
    assert main([str(a) for a in argv]) == 0


@pytest.mark.slow
def test_every_stage_reports_bitops_and_size_and_exports_qdq(tmp_path, capsys):
    r = tmp_path / "run"
    run("train-supernet", "--config", tiny_config(tmp_path), "--run-dir", r)
    assert "quant" in yaml.safe_load((r / "config.yaml").read_text())["space"]
    run("search", "--run-dir", r)
    history = [json.loads(line) for line in (r / "search" / "history.jsonl").read_text().splitlines()]
    assert all(row["bitops"] <= 400e6 and row["size"] > 0 for row in history)
    best = json.loads((r / "search" / "best_arch.json").read_text())
    assert {"bitops", "size"} <= set(best)
    assert any(k.endswith(".weight_bits") for k in best["arch"])
    run("retrain", "--run-dir", r)
    run("evaluate", "--run-dir", r)
    report = json.loads((r / "eval.json").read_text())
    assert report["bitops"] == best["bitops"] and report["size"] == best["size"]
    pytest.importorskip("onnx")
    run("export", "--run-dir", r)
    import onnx
    ops = {n.op_type for n in onnx.load(str(r / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    capsys.readouterr()
    # retrain.init=supernet fine-tunes the supernet's weights and step sizes
    run("retrain", "--run-dir", r, "--force", "init=supernet")
    assert load_checkpoint(r / "retrain" / "last.pt")["step"] == TINY["retrain"]["steps"]


@pytest.mark.slow
def test_a_killed_qat_supernet_resumes_bitwise_with_its_step_sizes(tmp_path):
    r = tmp_path / "run"
    run("train-supernet", "--config", tiny_config(tmp_path), "--run-dir", r)
    full = load_checkpoint(r / "supernet" / "last.pt")
    steps = [k for k in full["model"] if "_steps." in k]
    assert steps and any(full["model"][k].ne(1).any() for k in steps)  # learned, not left at their start
    assert any(full["model"][k].any() for k in full["model"] if k.endswith(".started"))
    crashed = tmp_path / "crashed"
    shutil.copytree(r, crashed)
    shutil.copy(r / "supernet" / "step-3.pt", crashed / "supernet" / "last.pt")
    run("train-supernet", "--run-dir", crashed, "--resume")
    resumed = load_checkpoint(crashed / "supernet" / "last.pt")
    assert full["model"].keys() == resumed["model"].keys()
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [
    ("space.quant.weight_bits=[2,9]", "bit width 9 is not supported; use integers in 2..8, or 32 for full precision"),
    ("space.quant.act_bits=[]", "needs both weight_bits and act_bits"),
    ("space.quant.exclude=[nothing]", "exclude 'nothing' names no quantizable layer"),
    ("space.quant.share=stage", "share must be 'layer' or 'block'"),
    ("search.constraints=[bitops<=1k]", r"bitops <= 1000 cannot be met: this space's bitops range is \S+ \.\. \S+"),
    ("retrain.init=warm", "retrain.init must be 'scratch' or 'supernet'"),
])
def test_bad_quantization_settings_are_one_line(tmp_path, capsys, override, message):
    r = tmp_path / "run"
    stage = "search" if override.startswith(("search.", "latency.")) else "train-supernet"
    if stage == "search":
        run("train-supernet", "--config", tiny_config(tmp_path), "--run-dir", r)
        code = main(["search", "--run-dir", str(r), override.partition(".")[2]] if override.startswith("search.")
                    else ["search", "--run-dir", str(r), override])
    else:
        code = main(["train-supernet", "--config", str(tiny_config(tmp_path)), "--run-dir", str(r), override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert __import__("re").search(message, err[0]), err[0]


def test_bitops_constraints_need_a_quantized_space(tmp_path, capsys):
    cfg = copy.deepcopy(TINY)
    cfg["search"]["constraints"] = ["bitops<=1G"]
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run("train-supernet", "--config", path, "--run-dir", tmp_path / "r")
    assert main(["search", "--run-dir", str(tmp_path / "r")]) == 2
    assert "needs quantized layers, and this model has none" in capsys.readouterr().err


@pytest.mark.slow
def test_a_budget_random_sampling_cannot_meet_starts_from_the_cheapest_architecture(tmp_path):
    """Few random bit widths add up to a BitOps near the minimum; the search still finds candidates."""
    r = tmp_path / "run"
    run("train-supernet", "--config", tiny_config(tmp_path), "--run-dir", r)
    from supernet.pipeline.build import load_data, model_options, space_model
    from supernet.pipeline.config import load_config
    from supernet.cost import CostModel
    cfg = load_config(r / "config.yaml")
    low = CostModel(space_model(cfg, model_options(cfg, load_data(cfg)))).range()["bitops_min"]
    run("search", "--run-dir", r, f"constraints=[bitops<={low}]")
    history = [json.loads(line) for line in (r / "search" / "history.jsonl").read_text().splitlines()]
    assert history[0]["origin"] == "cheapest" and history[0]["bitops"] == low
    assert all(row["bitops"] <= low for row in history)


@pytest.mark.slow
def test_a_latency_table_of_a_mixed_precision_space_times_its_qdq_blocks(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    r = tmp_path / "run"
    run("train-supernet", "--config", tiny_config(tmp_path), "--run-dir", r)
    table = tmp_path / "latency.json"
    run("latency", "--run-dir", r, "--out", table, "--runs", 3, "--warmup", 1, "backend=onnxruntime")
    recorded = json.loads(table.read_text())["target"]["options"]
    assert recorded["quant"]["weight_bits"] == QUANT["weight_bits"]
    run("search", "--run-dir", r, f"latency.table={table}", "latency.backend=onnxruntime",
        "constraints=[bitops<=400M,latency<=1s]")
    history = [json.loads(line) for line in (r / "search" / "history.jsonl").read_text().splitlines()]
    assert all(row["latency_ms"] > 0 and row["bitops"] <= 400e6 for row in history)


@pytest.mark.slow
def test_with_32_among_the_bits_the_table_times_int8_against_float_and_the_search_trades_them(tmp_path):
    """A budget in the lower quarter of the predicted range is met by every candidate the search keeps."""
    pytest.importorskip("onnxruntime")
    r = tmp_path / "run"
    quant = {"space": {**TINY["space"], "options": {**TINY["space"]["options"], "channel_search": False},
                       "quant": {**QUANT, "weight_bits": [4, 32], "act_bits": [8, 32]}}}
    run("train-supernet", "--config", tiny_config(tmp_path, **quant), "--run-dir", r)
    table = tmp_path / "latency.json"
    run("latency", "--run-dir", r, "--out", table, "--runs", 3, "--warmup", 1, "--check", 3, "backend=onnxruntime")
    data = json.loads(table.read_text())
    assert data["float_options"] and data["check"]["subnets"] == 3
    assert any(len(e) == 4 for g in data["groups"] for e in g["entries"])  # int8/float terms
    from supernet.cost import CostModel, LatencyTable
    from supernet.pipeline.build import load_data, model_options, space_model
    from supernet.pipeline.config import load_config
    cfg = load_config(r / "config.yaml")
    cost = CostModel(space_model(cfg, model_options(cfg, load_data(cfg))), latency=LatencyTable.load(table))
    low, high = cost.range()["latency_min"], cost.range()["latency_max"]
    assert low < high
    budget = low + 0.25 * (high - low)
    run("search", "--run-dir", r, f"latency.table={table}", "latency.backend=onnxruntime",
        f"constraints=[latency<={budget}ms]")
    history = [json.loads(line) for line in (r / "search" / "history.jsonl").read_text().splitlines()]
    assert history and all(row["latency_ms"] <= budget for row in history)
