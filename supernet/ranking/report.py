"""``rank/report.json`` from the plan and the stand-alone rows, and its printed table.

The ground truth is each architecture's stand-alone test top-1 under the first seed, or its test
accuracy in a NAS-Bench-201 table (``rank.ground_truth``: nothing trained, so no ``steps`` and no
ceiling). Every score (the supernet's, the strategy's log-probability, and the baselines) is held
against it with the same figures (``stats.figures``). The ceiling is the ground truth against itself
under another seed.
"""
from __future__ import annotations

from itertools import combinations
from statistics import mean, pstdev

from .stats import correlations, figures, finite, percentile

# Scores held against the ground truth: (name in the report, key in a row). Higher is taken as better
# for every one (more FLOPs, more parameters, a higher log-probability or proxy).
SCORES = (("supernet", "supernet_score"), ("log_prob", "log_prob"))
BASELINES = (("flops", "flops"), ("params", "params"), ("latency", "latency_ms"), ("naswot", "naswot"),
             ("synflow", "synflow"))


def build_report(plan: dict, rows: list[dict], topk: int) -> dict:
    """Every figure over the architectures trained with the first seed (all K, once finished)."""
    first = plan["settings"]["seeds"][0]
    by_index = {r["index"]: r for r in rows if r["seed"] == first}
    trained = [by_index[i] for i in sorted(by_index)]
    truth = [r["standalone"] for r in trained]
    settings = plan["settings"]
    report = {"strategy": plan["strategy"], "archs": len(trained), "planned": len(plan["candidates"]),
              "steps": settings["steps"], "seed": first}
    if settings.get("ground_truth") is not None:  # read from a table: nothing ran rank.steps
        # the column the rows were read from (an alias such as cifar10 resolved), else the one asked for
        column = next((r["ground_truth"] for r in trained if "ground_truth" in r), settings["ground_truth_column"])
        report.update(steps=None, ground_truth={"table": settings["ground_truth"], "column": column})
    for name, key in SCORES:
        if all(key in r for r in trained) and trained:
            report[name] = figures([finite(r[key]) for r in trained], truth, topk)
    if "supernet" in report:
        report["kendall_tau"], report["spearman"] = report["supernet"]["kendall_tau"], report["supernet"]["spearman"]
    report["baselines"] = {name: figures([finite(r[key]) for r in trained], truth, topk)
                           for name, key in BASELINES if trained and all(key in r for r in trained)}
    pick = next((i for i, r in enumerate(trained) if r["index"] == plan.get("pick")), None)
    if pick is not None:
        report["pick"] = {"index": trained[pick]["index"], "arch": trained[pick]["arch"],
                          "standalone": truth[pick], "percentile": percentile(truth, pick),
                          "regret": max(truth) - truth[pick]}
    if truth:
        best = max(range(len(truth)), key=truth.__getitem__)
        report["best"] = {"index": trained[best]["index"], "arch": trained[best]["arch"], "standalone": truth[best]}
        report["spread"] = {"min": min(truth), "max": max(truth), "std": pstdev(truth)}
    report["ceiling"] = ceiling(rows, plan["settings"]["seeds"])
    return report


def ceiling(rows: list[dict], seeds: list[int]) -> dict:
    """The ground truth's repeatability: τ and ρ between two seeds' stand-alone top-1 over the
    architectures trained with both (averaged over the seed pairs), and the mean |difference|."""
    acc = {s: {r["index"]: r["standalone"] for r in rows if r["seed"] == s} for s in seeds}
    pairs = []
    for a, b in combinations(seeds, 2):
        both = sorted(set(acc[a]) & set(acc[b]))
        if len(both) >= 3:
            c = correlations([acc[a][i] for i in both], [acc[b][i] for i in both])
            c["seed_gap"] = mean(abs(acc[a][i] - acc[b][i]) for i in both)
            pairs.append(c)
    if not pairs:
        return {"kendall_tau": None, "spearman": None, "archs": 0}
    avg = lambda key: None if any(p[key] is None for p in pairs) else mean(p[key] for p in pairs)  # noqa: E731
    return {"kendall_tau": avg("kendall_tau"), "kendall_p": pairs[0]["kendall_p"], "spearman": avg("spearman"),
            "spearman_p": pairs[0]["spearman_p"], "seed_gap": avg("seed_gap"), "archs": pairs[0]["n"],
            "seeds": seeds, "pairs": len(pairs)}


def _num(value, fmt: str = "{:+.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def report_table(report: dict) -> str:
    """The report as one table: a row per score, then the ceiling and the strategy's pick."""
    table = report.get("ground_truth")
    if table is None:
        head = (f"rank: {report['archs']} architectures of the {report['strategy']} supernet, trained alone for "
                f"{report['steps']} steps (seed {report['seed']})")
    else:
        head = (f"rank: {report['archs']} architectures of the {report['strategy']} supernet, the ground truth read "
                f"from {table['table']} ({table['column']}; nothing trained alone)")
    truth = "stand-alone" if table is None else "table"
    lines = [head, f"{'score':<10} {'tau-b':>7} {'p':>7} {'rho':>7} {'p':>7} {'top-q tau':>9} {'top-k':>6} "
                   f"{'pick pct':>8} {'regret':>7}"]
    rows = [(name, report[name]) for name, _ in SCORES if name in report] + list(report["baselines"].items())
    for name, f in rows:
        lines.append(f"{name:<10} {_num(f['kendall_tau']):>7} {_num(f['kendall_p'], '{:.3g}'):>7} "
                     f"{_num(f['spearman']):>7} {_num(f['spearman_p'], '{:.3g}'):>7} "
                     f"{_num(f['top_quarter_kendall_tau']):>9} {_num(f['topk_overlap'], '{:.2f}'):>6} "
                     f"{_num(f.get('pick_percentile'), '{:.2f}'):>8} {_num(f.get('pick_regret'), '{:.4f}'):>7}")
    c = report["ceiling"]
    if c.get("archs"):
        lines.append(f"{'ceiling':<10} {_num(c['kendall_tau']):>7} {_num(c['kendall_p'], '{:.3g}'):>7} "
                     f"{_num(c['spearman']):>7} {_num(c['spearman_p'], '{:.3g}'):>7}   seeds {c['seeds']} on "
                     f"{c['archs']} architectures, mean |gap| {c['seed_gap']:.4f}")
    elif table is not None:
        lines.append("ceiling    none: the table holds one figure per architecture, so there is no second seed")
    else:
        lines.append("ceiling    not measured (rank.repeat=0): no second seed")
    if "pick" in report:
        p = report["pick"]
        lines.append(f"the strategy's pick (arch {p['index']}): {truth} top-1 {p['standalone']:.4f}, "
                     f"percentile {p['percentile']:.2f}, regret {p['regret']:.4f}")
    if "spread" in report:
        s = report["spread"]
        lines.append(f"{truth} top-1 over the K: {s['min']:.4f} .. {s['max']:.4f} (std {s['std']:.4f})")
    return "\n".join(lines)
