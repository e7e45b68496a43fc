"""``supernet search``: evolution (random search, or NSGA-II for the accuracy-versus-cost front) over
the trained supernet, every candidate BN-recalibrated on the same training batches and scored on the
same validation images."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

from torch.utils.data import Subset

from ..arch import SearchSpace
from ..cost import Constraints
from ..data.loader import Compact, eval_loader, fixed_batches
from ..runtime import dist
from ..runtime.device import resolve_device
from ..runtime.io import write_json, write_text
from ..runtime.progress import progress_bar
from ..search import CandidateEvaluator, EvolutionSearch, NSGA2Search, make_search
from ..search.config import SearchConfig
from ..search.evolution import SearchStateError
from ..search.state import check_population, load_state, validate_state
from ..train import CheckpointError
from ..train.checkpoint import remove_stale_temp_files
from .build import benchmark_string, cost_model, load_data, load_supernet, model_options, needs_latency_table
from .config import dump_config, stage_config, use_runtime
from .plots import plot_pareto, plot_search
from .rundir import owning, record_config, replacing, require_run


def search(run_dir: Path, overrides: list[str] = (), resume: bool = False, force: bool = False) -> dict:
    """Search ``RUN/supernet`` into ``RUN/search`` (``state.json`` after each generation,
    ``history.jsonl``, ``topk.json``, ``best_arch.json``, ``search.png``; for nsga2 also ``pareto.json``
    and ``pareto.png``). On the nas-bench-201 space, ``best_arch.json`` and each ``topk.json`` entry
    also hold the architecture's NAS-Bench-201 string (``nas_bench_201``)."""
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "search"):
        cfg = stage_config(run_dir, overrides, "search")
        use_runtime(cfg)
        sc = cfg.search
        out = run_dir / "search"
        state_path = out / "state.json"
        state = None
        if resume:
            if not state_path.exists():
                raise CheckpointError(f"nothing to resume: {state_path} does not exist (run without --resume)")
            state = load_state(state_path)
        elif state_path.exists() and not force:
            raise CheckpointError(f"{out} already holds a search; pass --resume to continue it or --force to start over")
        device = resolve_device(sc.device)
        data = load_data(cfg)  # the search reads data.train (recalibration) and data.val (scores) only
        needs_latency_table(sc.constraints, cfg, "search.constraints", run_dir)
        needs_latency_table(sc.objectives, cfg, "search.objectives", run_dir)
        model, supernet_id = load_supernet(run_dir, cfg, data, device)
        cost = cost_model(cfg, model, model_options(cfg, data))
        constraints = Constraints(cost, sc.constraints)
        space = SearchSpace(model)
        check_population(sc, space)  # a generation too large for memory, before it is built
        if state is not None:
            validate_state(state, state_path, space)  # each result fits this space; top-k among them
        if state is not None and state.get("supernet", supernet_id) != supernet_id:
            raise SearchStateError(f"cannot resume {state_path}: its candidates were scored with the supernet "
                                   f"checkpoint at step {state['supernet'].get('step')} (sha256 "
                                   f"{state['supernet'].get('sha256')}...), now at step {supernet_id['step']} (sha256 "
                                   f"{supernet_id['sha256']}...); start over with --force")
        try:  # refuses a resume whose settings differ from the saved search's, before the images are loaded
            engine = make_search(space, None, sc, cost, constraints, state=state)
        except SearchStateError as e:
            raise SearchStateError(f"cannot resume {state_path}: {e}") from None
        recal, val, finish = search_batches(data, sc, cfg.data.num_workers, progress=sc.progress and dist.is_main())
        engine.evaluate = CandidateEvaluator(model, recal, val, device=device, prepare=finish)
        del recal, val  # the evaluator regroups them; these lists would double the memory
        main = dist.is_main()  # under torchrun every rank evaluates its share; rank 0 writes

        def named(r: dict) -> dict:
            """nas-bench-201: the benchmark's own string beside the arch, the key of its tables."""
            return {"arch": r["arch"], **benchmark_string(cfg, space, r["arch"]), **r}
        with replacing(run_dir, "search", dump_config(cfg), force and not resume) as rep:
            if main and rep is None:
                record_config(run_dir, cfg)

            chance = at_chance(data.num_classes, len(engine.evaluate.val_y))
            warned = []

            def save(engine: EvolutionSearch, new: list) -> None:
                if not main:
                    return
                if new and not warned and max(r["top1"] for r in new) <= chance:
                    warned.append(True)
                    print(f"warning: all {len(new)} candidates of generation {new[0]['generation']} scored at chance "
                          f"(best validation top-1 {max(r['top1'] for r in new):.3f}, at or below {chance:.3f} for "
                          f"{data.num_classes} classes on {len(engine.evaluate.val_y)} images): the supernet has not "
                          f"learned, so this search ranks noise; check {run_dir / 'supernet' / 'metrics.jsonl'} "
                          f"(e.g. lower supernet.optim.lr) before trusting best_arch.json", file=sys.stderr)
                write_json(state_path, {**engine.state_dict(), "supernet": supernet_id})
                write_text(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in engine.history()))
                write_json(out / "topk.json", [named(r) for r in engine.topk])
                if isinstance(engine, NSGA2Search):
                    write_json(out / "pareto.json", engine.pareto())
                if rep is not None:
                    rep.commit_if_ready()

            if main:
                out.mkdir(parents=True, exist_ok=True)
                remove_stale_temp_files(out)
            t0 = time.perf_counter()
            topk = engine.run(on_generation=save, progress=sc.progress and main)
            if not topk:  # inside: a forced search that found nothing puts the earlier one back
                kept = "" if rep is None else f"; --force changed nothing: the earlier search is still in {out}"
                raise ValueError(f"the search evaluated no candidate; loosen search.constraints{kept}")
        best = engine.best()
        first = [r["top1"] for r in engine.results if r["generation"] == 0]
        summary = {"best": best, "evaluated": len(engine.results), "seconds": time.perf_counter() - t0,
                   "random_mean_top1": sum(first) / len(first) if first else None}
        if isinstance(engine, NSGA2Search):
            summary["front"] = engine.pareto()
        if not main:
            return summary
        assert constraints.ok(best["arch"]), "a resumed search kept a candidate that breaks search.constraints"
        write_json(out / "best_arch.json", {**named({"arch": best["arch"]}), "space": cfg.space.name, **{
            k: best[k] for k in ("top1", "top5", "flops", "params", "bitops", "size", "latency_ms", "generation")
            if k in best}, **({"chosen": "the lowest-error member of the front in pareto.json"}
                              if isinstance(engine, NSGA2Search) else {})})
        bounds = constraints.items
        # the x-axis of search.png: the constrained cost (latency first), else BitOps or FLOPs
        metric = next((m for m in ("latency", "bitops", "size") if any(c.metric == m for c in bounds)),
                      "bitops" if cost.quantized else "flops")
        metric = next((o for o in sc.objectives if o not in ("error", "params")), metric)  # nsga2: its first cost
        upper = min((c.max for c in bounds if c.metric == metric and c.max is not None), default=None)
        lower = max((c.min for c in bounds if c.metric == metric and c.min is not None), default=None)
        plot_search(engine.results, out / "search.png", upper, lower, metric=metric,
                    title=f"{sc.algorithm} search on {cfg.space.name}", recalibrated=sc.recal_batches > 0)
        if isinstance(engine, NSGA2Search):
            plot_pareto(engine, out / "pareto.png", title=f"NSGA-II on {cfg.space.name}")
    return summary


def at_chance(classes: int, n: int) -> float:
    """The highest top-1 that guessing reaches by luck: chance plus three binomial standard errors."""
    p = 1 / classes
    return p + 3 * (p * (1 - p) / max(n, 1)) ** 0.5


def search_batches(data, sc: SearchConfig, num_workers: int = 0, progress: bool = False) -> tuple[list, list, Callable]:
    """The recalibration and validation batches, loaded once per search and kept compact (uint8
    for image files and CIFAR-10); the evaluator finishes them group by group as it uses them."""
    train, val = Compact(data.train), Compact(data.val)
    if sc.val_images is not None:
        val = Subset(val, range(min(sc.val_images, len(val))))
    bar = lambda desc: lambda it: progress_bar(iterable=it, desc=desc, unit="batch", leave=False, disable=not progress)
    recal = fixed_batches(train, sc.recal_batch_size, sc.recal_batches, sc.seed, num_workers, bar("recalibration images"))
    return recal, list(bar("validation images")(eval_loader(val, sc.val_batch_size, num_workers))), train.finish
