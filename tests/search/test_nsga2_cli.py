"""``supernet search algorithm=nsga2`` and ``supernet retrain --pick`` through the real CLI: the
artifacts, a search killed mid-generation resuming byte for byte, and bad input in one line."""
import json
import shutil
import signal

import pytest
import yaml

from supernet.cli import main
from supernet.pipeline.retrain import pick_from_front
from supernet.search.pareto import dominates, knee
from supernet.train import load_checkpoint

from ..test_bad_input import refused_in_one_line
from ..test_crash import finish, supernet
from ..test_pipeline import TINY

NSGA2 = ["algorithm=nsga2", "objectives=[error,flops]"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny supernet (2 steps) with an NSGA-II search, and a copy searched by the evolution."""
    root = tmp_path_factory.mktemp("nsga2")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = root / "run"
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run), "steps=2"]) == 0
    shutil.copytree(run, root / "evolution")
    assert main(["search", "--run-dir", str(root / "evolution"), "generations=1"]) == 0
    assert main(["search", "--run-dir", str(run), *NSGA2]) == 0
    return root, run


def read(run):
    search = run / "search"
    history = [json.loads(line) for line in (search / "history.jsonl").read_text().splitlines()]
    return json.loads((search / "pareto.json").read_text()), history, json.loads((search / "best_arch.json").read_text())


def test_the_search_writes_the_front_its_hypervolumes_and_its_lowest_error_member(searched):
    _, run = searched
    pareto, history, best = read(run)
    candidates = [h for h in history if "arch" in h]
    points = [(h["top1_err"], h["flops"]) for h in candidates]
    front = {json.dumps(h["arch"]) for h, p in zip(candidates, points) if not any(dominates(q, p) for q in points)}
    assert {json.dumps(m["arch"]) for m in pareto["front"]} == front
    assert [m["top1_err"] for m in pareto["front"]] == sorted(m["top1_err"] for m in pareto["front"])
    assert all(set(m["costs"]) == {"flops", "params"} for m in pareto["front"])
    volumes = [h for h in history if "hypervolume" in h]
    assert [h["generation"] for h in volumes] == [0, 1, 2] and volumes[-1]["hypervolume"] == pareto["hypervolume"]
    assert pareto["reference"]["error"] == {"best": 0.0, "reference": 1.0}
    assert best["arch"] == pareto["front"][0]["arch"] and "lowest-error member" in best["chosen"]
    assert (run / "search" / "pareto.png").stat().st_size > 0


# Search writes: 1 = config.yaml, then per generation state.json, history.jsonl, topk.json, pareto.json
# (2-5, 6-9, ...): killed after generation 0's state (3), and inside generation 1's writes (7).
@pytest.mark.slow
@pytest.mark.parametrize("kill_at_write", [3, 7])
def test_a_search_killed_mid_generation_resumes_byte_for_byte(searched, tmp_path, kill_at_write):
    _, ref = searched
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    shutil.rmtree(run / "search")
    assert supernet("search", "--run-dir", run, *NSGA2, kill_at_write=kill_at_write) == -signal.SIGKILL
    finish(["search", "--run-dir", run, *NSGA2], run / "search")
    for name in ("history.jsonl", "pareto.json", "best_arch.json"):
        assert (run / "search" / name).read_bytes() == (ref / "search" / name).read_bytes(), name


def test_pick_chooses_the_lowest_error_member_under_a_bound_and_the_knee(searched, tmp_path, capsys):
    _, ref = searched
    members = read(ref)[0]["front"]
    flops = sorted(m["costs"]["flops"] for m in members)
    bound = flops[len(flops) // 2]
    under = min((m for m in members if m["costs"]["flops"] <= bound), key=lambda m: m["top1_err"])
    assert pick_from_front(ref, f"flops<={bound / 1e6}M") == under
    assert pick_from_front(ref, "knee") == members[knee([(m["top1_err"], m["costs"]["flops"]) for m in members])]
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    capsys.readouterr()
    assert main(["retrain", "--run-dir", str(run), "--pick", f"flops<={bound}"]) == 0
    assert "--pick flops<=" in capsys.readouterr().out
    assert load_checkpoint(run / "retrain" / "last.pt")["meta"]["arch"] == under["arch"]


@pytest.mark.parametrize("argv, message", [
    (["search", "--force", "algorithm=evolution", "objectives=[error,flops]"],
     "objectives=['error', 'flops'] are for algorithm=nsga2; algorithm=evolution ranks by top-1 error alone"),
    (["search", "--force", "algorithm=random", "objectives=[error,flops]"], "are for algorithm=nsga2"),
    (["search", "--force", "algorithm=nsga2", "objectives=[error,speed]"], "unknown objective 'speed'"),
    (["search", "--force", "algorithm=nsga2", "objectives=[]"], "algorithm=nsga2 needs objectives with the error and at least one cost"),
    (["search", "--force", "algorithm=nsga2", "objectives=[error,latency]"],
     "search.objectives 'latency' needs a latency table"),
    (["search", "--force", "algorithm=nsga2", "objectives=[error,bitops]"],
     "search.objectives: bitops needs quantized layers"),
    (["retrain", "--pick", "flops<=1"], "no member of the front meets flops <= 1; its "),
    (["retrain", "--pick", "latency<=1ms"], "the front records flops, params, not latency"),
    (["retrain", "--pick", "speed<=3"], "cannot read constraint 'speed<=3'"),
    (["retrain", "--pick", "knee", "--arch", "[0, 0, 0, 0, 0, 0, 0, 0]"], "and --arch both choose the architecture"),
])
def test_bad_input_is_one_line_and_changes_nothing(searched, tmp_path, capsys, argv, message):
    _, ref = searched
    refused(ref, tmp_path, capsys, argv, message)


def test_switching_back_to_the_evolution_drops_the_saved_objectives(searched, tmp_path, capsys):
    _, ref = searched
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    assert main(["search", "--run-dir", str(run), "--force", "algorithm=evolution", "generations=1"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["search"]["objectives"] == []
    assert not (run / "search" / "pareto.json").exists()


def test_pick_after_a_single_objective_search_is_refused(searched, tmp_path, capsys):
    root, _ = searched
    refused(root / "evolution", tmp_path, capsys, ["retrain", "--pick", "knee"],
            "this run's search ran algorithm=evolution, which finds one architecture")


def test_a_front_no_member_of_which_meets_the_pick_prints_its_range(searched, tmp_path, capsys):
    _, ref = searched
    flops = [m["costs"]["flops"] for m in read(ref)[0]["front"]]
    refused(ref, tmp_path, capsys, ["retrain", "--pick", "flops<=1"],
            f"no member of the front meets flops <= 1; its {len(flops)} members' flops runs from "
            f"{min(flops) / 1e6:g}M to {max(flops) / 1e6:g}M")


def refused(run, tmp_path, capsys, argv, message) -> None:
    """``argv`` on a copy of ``run``: exit 2, one stderr line holding ``message``, the run unchanged."""
    refused_in_one_line((run.parent, run), tmp_path, capsys, lambda tmp, copy: [argv[0], "--run-dir", copy, *argv[1:]],
                        message)
