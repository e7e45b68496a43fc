"""``supernet rank`` on a run of every strategy: each reports its supernet's scores, its pick, and
for the α/θ strategies the log-probability of each architecture."""
import json

import pytest
import yaml

from supernet.cli import main

TINY_FBNET = {
    "data": {"name": "synthetic", "image_size": 8, "synthetic_train": 64, "synthetic_test": 16,
             "synthetic_classes": 3, "val_per_class": 2},
    "space": {"name": "fbnet-small", "options": {"input_size": 8, "stem_width": 8, "stage_widths": [8, 8],
                                                 "stage_repeats": [1, 1], "stage_strides": [1, 2], "head_width": 16}},
    "supernet": {"steps": 4, "batch_size": 8, "checkpoint_every": 4, "log_every": 2, "progress": False},
    "search": {"population": 4, "generations": 1, "topk": 2, "mutations": 2, "crossovers": 2,
               "recal_batches": 1, "recal_batch_size": 8, "val_batch_size": 8, "progress": False},
    "retrain": {"steps": 2, "batch_size": 8, "checkpoint_every": 2, "progress": False, "bn_recal_batches": 1},
}
STRATEGIES = {
    "spos": {}, "fairnas": {},
    "enas": {"train_steps": 2, "ctrl_steps": 1, "held_out": 0.25},
    "darts": {}, "proxyless": {"latency_loss": None, "held_out": 0.25}, "fbnet": {"latency_loss": None, "held_out": 0.25},
}
ALPHA = ("darts", "proxyless", "fbnet")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_rank_works_on_a_run_of_every_strategy(tmp_path, capsys, name):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY_FBNET, "strategy": {"name": name, **STRATEGIES[name]}}))
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run)]) == 0
    if name in ("spos", "fairnas"):  # a search picks their architecture; the others choose it themselves
        assert main(["search", "--run-dir", str(run)]) == 0
    code = main(["rank", "--run-dir", str(run), "archs=4", "steps=1", "pool=6", "repeat=3", "proxy_batch=4",
                 "progress=false"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "rank" / "results.jsonl").read_text().splitlines()]
    best = json.loads((run / "search" / "best_arch.json").read_text())["arch"]
    assert rows[0]["source"] == "pick" and rows[0]["arch"] == best
    assert all(0 <= r["supernet_score"] <= 1 and 0 <= r["standalone"] <= 1 for r in rows)
    assert ("log_prob" in rows[0]) == (name in ALPHA)
    report = json.loads((run / "rank" / "report.json").read_text())
    assert {"kendall_tau", "spearman", "baselines", "ceiling", "pick"} <= set(report)
    assert {"flops", "params", "naswot", "synflow"} <= set(report["baselines"])
    assert f"of the {name} supernet" in out
