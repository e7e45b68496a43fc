"""``supernet rank``: does the supernet's ranking mean anything on this space?

K architectures are trained alone with the retrain recipe under a shorter schedule (``rank.steps``),
and the supernet's score of each is held against its stand-alone test top-1, beside what costs
nothing: FLOPs, params, latency and two zero-cost proxies (NASWOT, SynFlow). A second seed on a
subset measures how far the ground truth itself repeats; no score can be trusted beyond that.

    RUN/rank/plan.json      the K architectures, their scores, costs and proxies, and the jobs
    RUN/rank/results.jsonl  one row per stand-alone training, rewritten atomically as each finishes
    RUN/rank/report.json    the figures (``supernet.ranking.report``); rank.png the picture

Under torchrun every rank trains other architectures (``dist.alone``) and rank 0 writes the rows.

With ``rank.ground_truth`` (``--ground-truth TABLE``), a run of the nas-bench-201 space reads each
architecture's accuracy from a NAS-Bench-201 table (CSV: an ``ArchitectureString`` column and one
column of test accuracies in percent per dataset) instead of training it: nothing is trained, and
there is no second seed (the table holds one figure per architecture), so no ceiling.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..arch import ArchError, SearchSpace, parse_arch
from ..arch.formats import from_nas_bench_201, to_nas_bench_201
from ..data.loader import Cutout, fixed_batches
from ..nn.layers import DropPath
from ..ranking import build_report, naswot, report_table, stratified, synflow
from ..ranking.plot import plot_rank
from ..ranking.stats import finite
from ..runtime import dist
from ..runtime.device import resolve_device
from ..runtime.io import MB, read_json_file, write_json, write_text
from ..runtime.typed import ConfigError, to_dict
from ..search import CandidateEvaluator, recalibrate_bn
from ..spaces import create
from ..strategies import Plain, build_strategy
from ..train import CheckpointError, evaluate, fit, load_latest
from ..train.checkpoint import remove_stale_temp_files
from .build import build_subnet, cost_model, load_data, load_supernet, model_options
from .config import RunConfig, dump_config, stage_config, use_runtime
from .retrain import check_retrain_recipe
from .rundir import owning, record_config, replacing, require_run
from .search import search_batches

# The settings a resumed rank must share with the plan it continues (the rest only change the report).
PLAN_KEYS = ("archs", "steps", "pool", "top_picks", "archs_file", "seeds", "repeat", "proxy_batch", "seed",
             "ground_truth", "ground_truth_column")
# A NAS-Bench-201 table's columns (the NATS-Bench topology CSV): the architecture, and the 200-epoch
# test accuracies in percent that rank.ground_truth_column names by dataset.
ARCH_COLUMN = "ArchitectureString"
COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
           "imagenet16-120": "ImageNetTestAccuracy200Epochs"}
TABLE_MAX_BYTES = 256 * MB  # 15,625 rows take 3 MB


def rank(run_dir: Path, overrides: list[str] = (), resume: bool = False, force: bool = False) -> dict:
    """Rank ``RUN/supernet`` against stand-alone training into ``RUN/rank``; returns the report."""
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "rank"):
        cfg = stage_config(run_dir, overrides, "rank")
        use_runtime(cfg)
        out = run_dir / "rank"
        check_start(out, resume, force)
        if dist.is_main() and out.is_dir():
            remove_stale_temp_files(out)  # a write a kill interrupted: the file it was replacing is whole
        table = ground_truth(cfg) if cfg.rank.ground_truth is not None else None  # before any work
        data = load_data(cfg)
        with replacing(run_dir, "rank", dump_config(cfg), force and not resume) as rep:
            plan = shared_plan(run_dir, cfg, data, out, resume, table, record=rep is None)
            rows = read_rows(out / "results.jsonl") if resume else []
            on_rows = lambda: rep.commit_if_ready() if rep is not None else None  # noqa: E731
            rows = train_jobs(cfg, data, plan, rows, out, on_rows, table)
        report = build_report(plan, rows, cfg.rank.topk)
        if dist.is_main():
            write_json(out / "report.json", report)
            alone = f"{cfg.rank.steps} steps alone" if table is None else f"ground truth: {cfg.rank.ground_truth_column}"
            plot_rank(rows, report, out / "rank.png",
                      title=f"{plan['strategy']} supernet on {cfg.space.name}: {len(plan['candidates'])} architectures, "
                            f"{alone}")
            print(report_table(report))  # its first line says where the ground truth came from
    return report


def check_start(out: Path, resume: bool, force: bool) -> None:
    """A rank folder with a plan continues (--resume) or starts over (--force), never silently."""
    has_plan = (out / "plan.json").is_file()
    if resume and not has_plan:
        raise CheckpointError(f"nothing to resume: {out / 'plan.json'} does not exist (run without --resume)")
    if has_plan and not resume and not force:
        raise CheckpointError(f"{out} already holds a ranking; pass --resume to continue it or --force to start over")


# --- the plan: which architectures, and what the supernet and the free scores say of them ----------
def shared_plan(run_dir: Path, cfg: RunConfig, data, out: Path, resume: bool, table: Optional[dict] = None,
                record: bool = True) -> dict:
    """Rank 0's plan (made, or read back and checked on --resume), given to every rank. ``record``:
    save the config once the plan's checks have passed (a refused rank leaves config.yaml as it was)."""
    plan = None
    if dist.is_main():
        if resume:
            plan = read_json_file(out / "plan.json", "rank plan", CheckpointError)
            check_plan(plan, cfg, out / "plan.json")
        else:
            plan = make_plan(run_dir, cfg, data, table)
        if record:
            record_config(run_dir, cfg)
        if not resume:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "plan.json", plan)
    return dist.all_gather_objects(plan)[0]


def check_plan(plan: dict, cfg: RunConfig, path: Path) -> None:
    """Refuse a resume whose settings would change the plan or the training it continues."""
    now = plan_settings(cfg)
    for key, value in now.items():
        if plan.get("settings", {}).get(key) != value:
            raise CheckpointError(f"cannot resume {path}: rank.{key} was {plan['settings'].get(key)!r}, now {value!r}; "
                                  f"resume with the saved settings or start over with --force")


def plan_settings(cfg: RunConfig) -> dict:
    rk = to_dict(cfg.rank)
    return {**{k: rk[k] for k in PLAN_KEYS}, "retrain": to_dict(cfg.retrain)}


def make_plan(run_dir: Path, cfg: RunConfig, data, table: Optional[dict] = None) -> dict:
    """The K architectures with their supernet scores, costs and zero-cost proxies, and the jobs
    (with a ground-truth ``table``: one per architecture, each of them in the table)."""
    rk = cfg.rank
    device = resolve_device(rk.device)
    model, supernet_id = load_supernet(run_dir, cfg, data, device)
    space = SearchSpace(model)
    cost = cost_model(cfg, model, model_options(cfg, data))
    chosen = chosen_archs(run_dir, space, rk)
    recal, val, finish = search_batches(data, cfg.search, cfg.data.num_workers)
    evaluator = CandidateEvaluator(model, recal, val, device=device, prepare=finish)
    if rk.archs_file is None:
        rng = random.Random(rk.seed)
        pool = [space.sample(rng) for _ in range(rk.pool)]
        fresh = {json.dumps(a, sort_keys=True) for a in pool} - {json.dumps(a, sort_keys=True) for a, _ in chosen}
        if len(chosen) + len(fresh) < rk.archs:  # K would shrink silently; refused before anything is scored
            raise ConfigError(f"rank.pool={rk.pool} random architectures hold {len(fresh)} distinct ones besides the "
                              f"search's {len(chosen)}, fewer than rank.archs={rk.archs}; raise pool (this space "
                              f"holds {space.size:,} architectures) or lower archs")
        pool_scores = [1 - s["top1_err"] for s in evaluator.evaluate_many(pool)]
        chosen += spread_over_scores(pool, pool_scores, chosen, rk.archs)
    archs = [a for a, _ in chosen]
    for arch in archs if table is not None else []:  # every architecture is in the table, or none is scored
        look_up(table, arch)
    scores = evaluator.evaluate_many(archs)
    log_prob = arch_log_prob(run_dir, cfg, space, cost)
    proxy_x = fixed_batches(data.train, rk.proxy_batch, 1, rk.seed)[0][0]
    candidates = []
    for i, ((arch, source), s) in enumerate(zip(chosen, scores)):
        c = {"index": i, "arch": arch, "source": source, "supernet_score": 1 - s["top1_err"],
             "supernet_top5": 1 - s["top5_err"], "flops": cost.flops(arch), "params": cost.params(arch)}
        if log_prob is not None:
            c["log_prob"] = log_prob(arch)
        if cost.latency_table is not None:
            c["latency_ms"] = cost.latency(arch)
        c.update(proxies(cfg, data, arch, rk.seeds[0], proxy_x))
        candidates.append(c)
    pick = next((c["index"] for c in candidates if c["source"] == "pick"), None)
    # a table holds one accuracy per architecture: a second seed would repeat it, not measure a ceiling
    again = stratified([c["supernet_score"] for c in candidates], rk.repeat) if rk.repeat and not rk.ground_truth else []
    jobs = [[i, rk.seeds[0]] for i in range(len(candidates))] + [[i, s] for s in rk.seeds[1:] for i in sorted(again)]
    return {"settings": plan_settings(cfg), "strategy": cfg.strategy["name"], "supernet": supernet_id,
            "candidates": candidates, "pick": pick, "jobs": jobs}


def chosen_archs(run_dir: Path, space: SearchSpace, rk) -> list[tuple[dict, str]]:
    """``(arch, source)``: a user's list, or the strategy's pick (search/best_arch.json) and the
    search's best (search/topk.json), each once."""
    if rk.archs_file is not None:
        archs = [(a, "file") for a in read_archs_file(Path(rk.archs_file), space)]
        if len(archs) < 3:
            raise ConfigError(f"rank.archs_file {rk.archs_file} lists {len(archs)} architecture(s); a ranking needs "
                              f"at least 3")
        return unique(archs)
    if rk.archs > space.size:
        raise ConfigError(f"rank.archs={rk.archs} is more than this space holds ({space.size:,} architectures); "
                          f"set archs to at most {space.size:,}")
    if rk.pool < rk.archs:
        raise ConfigError(f"rank.pool={rk.pool} is smaller than rank.archs={rk.archs}: the K architectures are taken "
                          f"from the pool; raise pool (e.g. {8 * rk.archs})")
    found = []
    best = run_dir / "search" / "best_arch.json"
    if best.is_file():
        found.append((parse_arch(best, space), "pick"))
    topk = run_dir / "search" / "topk.json"
    if topk.is_file() and rk.top_picks:
        entries = read_json_file(topk, "search top-k", ConfigError)
        found += [(parse_arch(e["arch"], space), "search") for e in entries[:rk.top_picks]]
    return unique(found)[:rk.archs]


def read_archs_file(path: Path, space: SearchSpace) -> list[dict]:
    """A JSON list of architectures (each an arch or a result file's ``{"arch": ...}``), or a text
    file with one architecture per line: a file or a JSON object."""
    if not path.is_file():
        raise ConfigError(f"rank.archs_file {path} does not exist; give a JSON list of architectures or a file "
                          f"naming one architecture file per line")
    text = path.read_text(encoding="utf-8")
    if text.lstrip()[:1] == "[":
        items = read_json_file(path, "rank.archs_file", ConfigError)
        return [parse_arch(a["arch"] if isinstance(a, dict) and "arch" in a else a, space) for a in items]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    # each line an architecture file (relative to the list's folder) or an architecture as JSON
    return [parse_arch(line if line[0] in "{[|" or Path(line).is_absolute() else path.parent / line, space)
            for line in lines]


def unique(archs: list[tuple[dict, str]]) -> list[tuple[dict, str]]:
    seen, out = set(), []
    for arch, source in archs:
        key = json.dumps(arch, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append((arch, source))
    return out


def spread_over_scores(pool: list[dict], scores: list[float], chosen: list, k: int) -> list[tuple[dict, str]]:
    """The pool's architectures at evenly spaced score ranks, until ``chosen`` plus these make ``k``."""
    taken = {json.dumps(a, sort_keys=True) for a, _ in chosen}
    fresh = unique([(a, "stratified") for a in pool if json.dumps(a, sort_keys=True) not in taken])
    fresh_scores = [scores[pool.index(a)] for a, _ in fresh]
    return [fresh[i] for i in stratified(fresh_scores, k - len(chosen))]


def arch_log_prob(run_dir: Path, cfg: RunConfig, space: SearchSpace, cost) -> Optional[Callable[[dict], float]]:
    """log P(arch) under the strategy's trained α / θ (DARTS, Proxyless, FBNet: Σ over the labels
    with weights of log softmax); None for a strategy without them (SPOS, FairNAS, ENAS)."""
    strategy = build_strategy(cfg.strategy, space, cfg.supernet.seed, cost=cost)
    if not hasattr(strategy, "probabilities"):
        return None
    ck, _ = load_latest(run_dir / "supernet")
    strategy.setup(torch.device("cpu"))
    strategy.load_state_dict(ck["strategy"])
    probs = {label: torch.tensor(p, dtype=torch.float64).log() for label, p in strategy.probabilities().items()}

    def log_prob(arch: dict) -> float:
        return float(sum(probs[label][arch[label]].sum() for label in probs))  # a list (InputChoice): Σ over inputs
    return log_prob


def proxies(cfg: RunConfig, data, arch: dict, seed: int, x: torch.Tensor) -> dict:
    """NASWOT and SynFlow of ``arch`` at the initialisation its stand-alone training starts from."""
    torch.manual_seed(seed)
    model = build_subnet(cfg, data, arch)
    return {"naswot": finite(naswot(model, x)), "synflow": finite(synflow(model, tuple(x.shape[1:])))}


# --- the stand-alone trainings ----------------------------------------------------------------------
def train_jobs(cfg: RunConfig, data, plan: dict, rows: list[dict], out: Path, on_rows: Callable,
               table: Optional[dict] = None) -> list[dict]:
    """Train the plan's jobs not yet in ``rows``, ``world`` at a time (one per rank); rank 0 adds
    each round's rows to ``results.jsonl`` (rewritten atomically) before the next round. With a
    ground-truth ``table``, each job's accuracy is read from it instead."""
    done = {(r["index"], r["seed"]) for r in rows}
    left = [job for job in plan["jobs"] if tuple(job) not in done]
    n, world = len(plan["jobs"]), dist.world()
    for start in range(0, len(left), world):
        mine = left[start + dist.rank()] if start + dist.rank() < len(left) else None
        row = None
        if mine is not None:
            c = plan["candidates"][mine[0]]
            truth = train_alone(cfg, data, c["arch"], mine[1]) if table is None else look_up(table, c["arch"])
            row = {**c, "seed": mine[1], **truth}
        new = [r for r in dist.all_gather_objects(row) if r is not None]
        rows = rows + new
        if dist.is_main():
            write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
            on_rows()
            for r in new:
                truth = "stand-alone" if table is None else "table"
                print(f"rank: {len(rows)}/{n} arch {r['index']} seed {r['seed']}: {truth} top-1 "
                      f"{r['standalone']:.4f}, supernet score {r['supernet_score']:.4f} ({r['seconds']:.1f} s)",
                      flush=True)
    return rows


def train_alone(cfg: RunConfig, data, arch: dict, seed: int) -> dict:
    """``arch`` trained from scratch with the retrain recipe for ``rank.steps``, tested on the test split."""
    rc = short_recipe(cfg, seed)
    t0 = time.perf_counter()
    torch.manual_seed(seed)  # the same initialisation the proxies scored
    model = build_subnet(cfg, data, arch)
    check_retrain_recipe(cfg, model)
    train_set = Cutout(data.train, rc.cutout) if rc.cutout else data.train
    device = dist.local_device(resolve_device(rc.device))
    with dist.alone():
        fit(model, train_set, rc, None, strategy=Plain(rc.aux_weight, rc.drop_path, rc.steps, seed=seed),
            desc=f"alone seed {seed}")
        if rc.bn_recal_batches:
            for m in model.modules():
                if isinstance(m, DropPath):
                    m.p = 0.0
            recalibrate_bn(model, fixed_batches(data.train, rc.batch_size, rc.bn_recal_batches, seed + 1), device)
        r = evaluate(model, data.test, device=device)
    return {"standalone": r["top1"], "standalone_top5": r["top5"], "seconds": time.perf_counter() - t0}


# --- the ground truth from a NAS-Bench-201 table ----------------------------------------------------
def ground_truth(cfg: RunConfig) -> dict:
    """``rank.ground_truth``'s column for this run: ``{"column", "path", "space", "accuracy": {key: top-1}}``.
    Refused in one line: a run of another space, a table that is not one, a missing column."""
    rk = cfg.rank
    if cfg.space.name != "nas-bench-201":
        raise ConfigError(f"rank.ground_truth={rk.ground_truth} is a NAS-Bench-201 table and this run's space is "
                          f"{cfg.space.name!r}; a table fits only a run of the nas-bench-201 space (without "
                          f"--ground-truth, rank trains each architecture alone)")
    space = SearchSpace(create("nas-bench-201", channels=1, cells=1))  # the labels and ops, at no cost
    column = COLUMNS.get(rk.ground_truth_column, rk.ground_truth_column)
    return {"column": column, "path": rk.ground_truth, "space": space,
            "accuracy": read_table(Path(rk.ground_truth), column, space)}


def read_table(path: Path, column: str, space: SearchSpace) -> dict[tuple, float]:
    """A NAS-Bench-201 table's ``column`` (test accuracy in percent) as top-1 fractions by architecture
    key (``space.encode``); every row's ``ArchitectureString`` must be an architecture of ``space``."""
    fix = f"give a NAS-Bench-201 table: a CSV with an {ARCH_COLUMN} column and accuracy columns in percent"
    if not path.is_file():
        raise ConfigError(f"rank.ground_truth {path} is not a file; {fix}")
    if path.stat().st_size > TABLE_MAX_BYTES:
        raise ConfigError(f"rank.ground_truth {path} is {path.stat().st_size / MB:,.0f} MB, more than a table of "
                          f"15,625 architectures needs ({TABLE_MAX_BYTES // MB} MB at most); {fix}")
    accuracy: dict[tuple, float] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for name, what in ((ARCH_COLUMN, "architecture"), (column, "accuracy")):
                if name not in fields:
                    hint = (f"; set rank.ground_truth_column to {', '.join(COLUMNS)} or one of the columns"
                            if what == "accuracy" else "")
                    raise ConfigError(f"rank.ground_truth {path} has no {what} column {name!r} (its columns: "
                                      f"{', '.join(fields) or 'none'}){hint}")
            for line, row in enumerate(reader, 2):
                try:
                    arch = from_nas_bench_201(row[ARCH_COLUMN] or "", space)
                except ArchError as e:
                    raise ConfigError(f"rank.ground_truth {path} line {line} is not an architecture of the "
                                      f"nas-bench-201 space: {e}") from None
                try:
                    value = float(row[column])
                except (TypeError, ValueError):
                    value = float("nan")
                if not 0 <= value <= 100:
                    raise ConfigError(f"rank.ground_truth {path} line {line}: {column} is {row[column]!r}, not an "
                                      f"accuracy in percent (0..100)")
                accuracy[space.encode(arch)] = value / 100
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"rank.ground_truth {path} is not a readable CSV ({e}); {fix}") from None
    if not accuracy:
        raise ConfigError(f"rank.ground_truth {path} has no rows; {fix}")
    return accuracy


def look_up(table: dict, arch: dict) -> dict:
    """One row's ground truth from the table; an architecture the table lacks is refused."""
    space = table["space"]
    key = space.encode(space.validate(arch))
    if key not in table["accuracy"]:
        raise ConfigError(f"architecture {to_nas_bench_201(arch, space)} is not in rank.ground_truth {table['path']} "
                          f"({len(table['accuracy']):,} architectures): give the whole table of the space")
    return {"standalone": table["accuracy"][key], "ground_truth": table["column"], "seconds": 0.0,
            "nas_bench_201": to_nas_bench_201(arch, space)}


def short_recipe(cfg: RunConfig, seed: int):
    """The retrain recipe over ``rank.steps``: its warm-up shortened in proportion, its seed ``seed``."""
    rc, steps = cfg.retrain, cfg.rank.steps
    warmup = round(rc.optim.warmup_steps * steps / rc.steps)
    return dataclasses.replace(rc, steps=steps, seed=seed, progress=cfg.rank.progress and dist.is_main(),
                               optim=dataclasses.replace(rc.optim, warmup_steps=warmup))


def read_rows(path: Path) -> list[dict]:
    """The rows of ``results.jsonl`` (none yet: an empty list)."""
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise CheckpointError(f"{path} line {n} is not JSON; start over with --force") from None
    return rows
