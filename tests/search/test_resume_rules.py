"""A resumed search obeys its config: settings that decide which candidates are legal or how they are
scored cannot change on resume (each difference is named); generations may grow. A generation with
no legal candidate is a warning with counts."""
import dataclasses
import json
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from supernet.cli import main
from supernet.cost import Constraints
from supernet.search import EvolutionSearch
from supernet.search.evolution import SearchStateError

from ..conftest import child_env
from ..test_pipeline import TINY
from .test_search import Recorder, small_search


def search_setup(**kw):
    """``small_search`` with some settings changed."""
    model, cost, cfg = small_search()
    return model, cost, dataclasses.replace(cfg, **kw)


def saved_state(**kw):
    model, cost, cfg = search_setup(**kw)
    engine = EvolutionSearch(cost.space, Recorder(cost.space), cfg, cost)
    engine.step()
    return cost, json.loads(json.dumps(engine.state_dict()))


def test_a_resume_refuses_other_constraints_and_scoring_settings_naming_each():
    cost, state = saved_state()
    _, _, cfg = search_setup(seed=1, recal_batches=3)
    hi = cost.range()["flops_max"]
    with pytest.raises(SearchStateError) as e:
        EvolutionSearch(cost.space, Recorder(cost.space), cfg, cost, Constraints(cost, [f"flops<={hi}"]), state=state)
    msg = str(e.value)
    assert f"constraints: the search used none, now flops <= {hi / 1e6:g}M" in msg
    assert "seed: the search used 0, now 1" in msg and "recal_batches: the search used 200, now 3" in msg
    assert "--force" in msg


def test_a_resume_may_grow_generations_but_not_shrink_them():
    cost, state = saved_state(generations=1)
    _, _, longer = search_setup(generations=3, progress=True, device="cpu")
    engine = EvolutionSearch(cost.space, Recorder(cost.space), longer, cost, state=state)
    engine.run()
    assert engine.generation == 3
    done = json.loads(json.dumps(engine.state_dict()))
    _, _, shorter = search_setup(generations=2)
    with pytest.raises(SearchStateError, match="search.generations=2 is fewer than the 3 already done"):
        EvolutionSearch(cost.space, Recorder(cost.space), shorter, cost, state=done)


def test_a_state_without_settings_is_refused():
    cost, state = saved_state()
    state["version"] = 1
    del state["settings"]
    _, _, cfg = search_setup()
    with pytest.raises(SearchStateError, match="state version 1"):
        EvolutionSearch(cost.space, Recorder(cost.space), cfg, cost, state=state)


def test_a_generation_with_no_legal_candidate_warns_with_counts(capsys):
    model, cost, cfg = search_setup(generations=2)
    hi = cost.range()["flops_max"]  # a lower bound: no cheapest architecture to start from
    engine = EvolutionSearch(cost.space, Recorder(cost.space), cfg, cost, Constraints(cost, [f"flops>={hi}"]))
    topk = engine.run()
    warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
    n = 100 * cfg.population
    if topk:  # the one smallest architecture was found in generation 0; generation 1 finds nothing new
        assert len(warnings) == 1 and warnings[0].startswith("warning: generation 1 found no legal new candidate (")
    else:
        assert warnings[0] == (f"warning: generation 0 found no legal new candidate (0 mutations, 0 crossovers, "
                               f"{n} random tried: 0 seen before, {n} broke the constraints)")
        assert len(warnings) == 2


def test_an_upper_bound_random_sampling_cannot_meet_starts_from_the_cheapest_architecture(capsys):
    model, cost, cfg = search_setup(generations=2)
    lo = cost.range()["flops_min"]
    engine = EvolutionSearch(cost.space, Recorder(cost.space), cfg, cost, Constraints(cost, [f"flops<={lo}"]))
    topk = engine.run()
    assert [(r["generation"], r["origin"]) for r in engine.results] == [(0, "cheapest")]  # the only one there is
    assert topk[0]["flops"] == lo and "the search space is exhausted" in capsys.readouterr().err


# --- the CLI: the reproductions -------------------------------------------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = root / "run"
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run), "steps=2"]) == 0
    assert main(["search", "--run-dir", str(run), "generations=1"]) == 0
    return run


@pytest.mark.slow
def test_search_resume_with_a_new_constraint_is_refused_and_changes_nothing(searched, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(searched, run)
    before = (run / "search" / "best_arch.json").read_text(), (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["search", "--run-dir", str(run), "--resume", "generations=4", "constraints=[flops<=1.2M]"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "constraints: the search used none, now flops <= 1.2M" in err
    assert len(err.strip().splitlines()) == 1
    assert ((run / "search" / "best_arch.json").read_text(), (run / "config.yaml").read_text()) == before
    # Growing the search is what --resume is for.
    assert main(["search", "--run-dir", str(run), "--resume", "generations=2"]) == 0
    state = json.loads((run / "search" / "state.json").read_text())
    assert state["generation"] == 2 and state["settings"]["constraints"] == []


def test_search_resume_after_the_supernet_changed_is_refused(searched, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(searched, run)
    shutil.copy(run / "config.yaml", tmp_path / "again.yaml")  # the supernet retrained longer, over the search
    assert main(["train-supernet", "--config", str(tmp_path / "again.yaml"), "--run-dir", str(run), "--force",
                 "steps=3"]) == 0
    capsys.readouterr()
    assert main(["search", "--run-dir", str(run), "--resume", "generations=2"]) == 2
    err = capsys.readouterr().err
    assert "its candidates were scored with the supernet checkpoint at step 2" in err and "now at step 3" in err


def _search_killed(run, *args, kill_at_write):
    env = child_env(kill_at_write)
    p = subprocess.run([sys.executable, "-m", "supernet", "search", "--run-dir", str(run), *args], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()


# A forced search's writes: 1 = its pending config.yaml, then per generation state.json, history.jsonl,
# topk.json (2, 3, 4), then the commit's config.yaml (5).
@pytest.mark.slow
@pytest.mark.parametrize("kill_at_write, committed", [(2, False), (3, True)])
def test_an_interrupted_forced_search_resumes_what_it_committed_and_obeys_its_constraints(
        searched, tmp_path, capsys, kill_at_write, committed):
    run = tmp_path / "run"
    shutil.copytree(searched, run)
    old_state, old_config = (run / "search" / "state.json").read_text(), (run / "config.yaml").read_text()
    _search_killed(run, "--force", "generations=2", "constraints=[flops<=1.2M]", kill_at_write=kill_at_write)
    capsys.readouterr()
    code = main(["search", "--run-dir", str(run), "--resume", "generations=3", "constraints=[flops<=1.2M]"])
    err = capsys.readouterr().err
    if not committed:  # nothing of the forced search survived: the old search is back, and it had no constraint
        assert code == 2 and "constraints: the search used none, now flops <= 1.2M" in err
        assert "had written no checkpoint; the earlier results are back in place" in err
        assert (run / "search" / "state.json").read_text() == old_state
        assert (run / "config.yaml").read_text() == old_config and not (run / ".replaced").exists()
        return
    assert code == 0, err
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["search"]["constraints"] == ["flops<=1.2M"]
    best = json.loads((run / "search" / "best_arch.json").read_text())
    assert best["flops"] <= 1.2e6
    history = [json.loads(l) for l in (run / "search" / "history.jsonl").read_text().splitlines()]
    assert history and all(h["flops"] <= 1.2e6 for h in history)


def test_a_forced_search_that_finds_nothing_legal_keeps_the_earlier_search(searched, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(searched, run)
    before = {p.name: p.read_bytes() for p in (run / "search").iterdir()}, (run / "config.yaml").read_text()
    capsys.readouterr()
    # Only the largest architecture is legal, and random sampling does not find it (a lower bound:
    # no cheapest architecture to start from).
    assert main(["search", "--run-dir", str(run), "--force", "generations=1", "constraints=[flops>=2439296]"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("warning: generation 0 found no legal new candidate (0 mutations, 0 crossovers, ")
    assert err[-1].endswith(f"the search evaluated no candidate; loosen search.constraints; --force changed "
                            f"nothing: the earlier search is still in {run / 'search'}")
    assert ({p.name: p.read_bytes() for p in (run / "search").iterdir()}, (run / "config.yaml").read_text()) == before
