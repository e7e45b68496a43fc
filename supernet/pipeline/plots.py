"""The pipeline's pictures. ``search.png``: for an evolutionary search, the score per generation and
against FLOPs (or latency) with the constraint line; for a strategy with weights per label (DARTS,
Proxyless, FBNet), the weights against step and, for DARTS, the derived cells; for ENAS, the
controller's reward, entropy and skip density per phase. And the latency check's plot
(``supernet latency --check K``)."""
from __future__ import annotations

import math
from pathlib import Path

from ..runtime.io import atomic_write


def plot_search(results: list[dict], path: Path, upper: float | None = None, lower: float | None = None,
                title: str = "", metric: str = "flops", recalibrated: bool = True) -> Path:
    """Top-1 by generation, and top-1 against ``metric`` (FLOPs, predicted latency, BitOps or
    size), with the constraint's bounds as lines.

    The title is ``title`` over the best candidate's score, said as what it is: the supernet's
    top-1 on the validation split with inherited weights (after BN recalibration, when
    ``recalibrated``), which ranks candidates but is not the retrained network's accuracy
    (``evaluate`` reports that).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    gens = [r["generation"] for r in results]
    top1 = [100 * r["top1"] for r in results]
    ax1.scatter(gens, top1, s=8, alpha=0.35, label="candidate")
    best, running = [], float("-inf")
    for g in sorted(set(gens)):
        running = max(running, max(t for gg, t in zip(gens, top1) if gg == g))
        best.append((g, running))
    if best:
        ax1.plot(*zip(*best), color="C3", marker="o", ms=3, label="best so far")
    ax1.set_xlabel("generation")
    ax1.set_ylabel("supernet top-1 on the validation split (%)")
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    if metric == "latency":
        xs, scale, unit, xlabel = [r["latency_ms"] for r in results], 1.0, "ms", "predicted latency (ms, latency table)"
    elif metric == "bitops":
        xs, scale, unit, xlabel = [r["bitops"] / 1e9 for r in results], 1e9, "G", "GBitOps (MACs x weight bits x activation bits)"
    elif metric == "size":
        xs, scale, unit, xlabel = [r["size"] / 1e6 for r in results], 1e6, "MB", "model size (MB, weights at their bit widths)"
    else:
        xs, scale, unit, xlabel = [r["flops"] / 1e6 for r in results], 1e6, "M", "MFLOPs (multiply-accumulates)"
    sc = ax2.scatter(xs, top1, c=gens, s=8, cmap="viridis")
    fig.colorbar(sc, ax=ax2, label="generation")
    for bound, name in ((upper, "max"), (lower, "min")):
        if bound is not None:
            ax2.axvline(bound / scale, color="C3", ls="--", label=f"{metric} {name} {bound / scale:.4g}{unit}")
    if upper is not None or lower is not None:
        ax2.legend(loc="lower right")
    ax2.set_xlabel(xlabel)
    ax2.set_ylabel("supernet validation top-1 (%)")
    ax2.grid(alpha=0.3)
    fig.suptitle("\n".join(filter(None, [title, search_headline(results, recalibrated)])))
    fig.tight_layout()
    return _save(fig, path)


def search_headline(results: list[dict], recalibrated: bool = True) -> str:
    """``best supernet validation top-1 82.00% (BN-recalibrated, inherited weights)``; empty
    before any candidate was scored."""
    if not results:
        return ""
    best = max(r["top1"] for r in results)
    how = "BN-recalibrated, inherited weights" if recalibrated else "inherited weights, no BN recalibration"
    return f"best supernet validation top-1 {100 * best:.2f}% ({how})"


def plot_arch_history(data: dict, path: Path, title: str = "") -> Path:
    """``search.png`` for a differentiable strategy (DARTS): how the softmax weights moved, and the
    cells they derived.

    One block per cell kind (the label's prefix before ``/``): a small plot per choice, one line per
    option (its colour the same in every panel, the option ``arch`` chose drawn thick), and, where
    ``edges`` says how the choices form nodes, a drawing of the derived cell.

    Args:
        data: a strategy's ``arch_history()``: ``options`` (label -> option names), ``edges`` (a
            node's InputChoice label -> the op label of each of its inputs; ``{}`` outside cell spaces),
            ``history`` (``{"step", "weights"}`` in order; the last, with step None, holds the final
            weights) and ``arch`` (the derived architecture).
        path: the PNG to write (atomically).
        title: the figure's title.

    Returns:
        ``path``.
    """
    if data.get("kind") == "controller":
        return plot_controller(data, path, title)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    options = {label: [str(o) for o in names] for label, names in data["options"].items()}
    edges, arch, history = data.get("edges") or {}, data.get("arch") or {}, data["history"]
    steps = _steps(history)
    groups = _groups(options, edges)
    colors = _colors(options)
    # One y range for every panel, up to just above the largest weight: early in a search all
    # weights sit near 1/n, and a 0..1 axis would flatten their movement.
    peak = max((w for e in history for ws in e["weights"].values() for w in ws if w == w), default=1.0)
    ymax = min(1.0, 1.15 * peak)
    kept = {ops[j] for label, ops in edges.items() for j in _chosen(arch.get(label)) if j < len(ops)}
    ncols = max((len(row) for rows in groups.values() for row in rows), default=1)
    # A fixed layout in inches (constrained layout took half the time): a panel's slot holds its axes,
    # its title and tick labels; each block (cell kind) has a heading; the legend sits at the bottom.
    slot_w, slot_h, gap_w, gap_h, cell_w = 2.2, 1.6, 0.45, 0.55, 5.6 if edges else 0.0
    blocks = [max(len(rows), 3 if _kind_edges(edges, kind) else 1) * slot_h for kind, rows in groups.items()]
    top, head, foot = 0.45 if title else 0.05, 0.35, 0.45
    fig_w, fig_h = 0.45 + ncols * slot_w + cell_w, top + sum(head + b for b in blocks) + foot
    fig = plt.figure(figsize=(fig_w, fig_h))
    y = top  # inches from the top
    for block, (kind, rows) in zip(blocks, groups.items()):
        nodes = _kind_edges(edges, kind)
        fig.text(0.5, 1 - (y + head / 2) / fig_h, f"{kind or 'choices'}: softmax weight per option against step"
                 + ("; the derived cell on the right" if nodes else ""), ha="center", va="center", fontsize=10)
        y += head
        if rows:
            grid = fig.add_gridspec(len(rows), ncols, left=0.45 / fig_w, right=(0.45 + ncols * slot_w - gap_w) / fig_w,
                                    top=1 - (y + 0.25) / fig_h, bottom=1 - (y + len(rows) * slot_h - 0.3) / fig_h,
                                    wspace=gap_w / (slot_w - gap_w), hspace=gap_h / (slot_h - gap_h))
        for r, row in enumerate(rows):
            for c, label in enumerate(row):
                ax = fig.add_subplot(grid[r, c])
                _plot_weights(ax, history, steps, label, options[label], _chosen(arch.get(label)), colors, ymax)
                name = label.split("/", 1)[-1]
                ax.set_title(f"{name}  (kept)" if label in kept else name, fontsize=8,
                             fontweight="bold" if label in kept else "normal")
        if nodes:
            ax = fig.add_axes(((fig_w - cell_w) / fig_w, 1 - (y + block) / fig_h, cell_w / fig_w, block / fig_h))
            _draw_cell(ax, nodes, options, arch, colors, (cell_w, block))
        y += block
    handles = [Line2D([], [], color=colors[name], lw=1.5, label=name) for name in colors]
    handles.append(Line2D([], [], color="black", lw=2.6, label="chosen in arch"))
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 9), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, y=1 - 0.25 / fig_h, va="center")
    return _save(fig, path, dpi=100)


def plot_controller(data: dict, path: Path, title: str = "") -> Path:
    """``search.png`` for ENAS: the controller's mean reward and its baseline, the entropy of its
    decisions and the skip density, one point per controller phase; and the export's candidate
    scores, when it scored sampled architectures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history, scores = data["history"], data.get("scores")
    fig, axes = plt.subplots(1, 3 if scores else 2, figsize=(13 if scores else 9, 3.8))
    steps = [h["step"] for h in history]
    ax = axes[0]
    ax.plot(steps, [h["reward"] for h in history], marker="o", ms=3, label="mean reward")
    ax.plot(steps, [h["baseline"] for h in history], ls="--", label="baseline")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out reward")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(steps, [h["entropy"] for h in history], color="C2", marker="o", ms=3, label="entropy (nats)")
    ax.set_xlabel("step")
    ax.set_ylabel("entropy of an architecture")
    ax.grid(alpha=0.3)
    density = [h.get("skip_density") for h in history]
    if all(d is not None for d in density) and density:
        twin = ax.twinx()
        twin.plot(steps, density, color="C3", ls=":", label="skip density")
        twin.set_ylabel("skip density")
        twin.set_ylim(0, 1)
        twin.legend(loc="upper right")
    ax.legend(loc="lower left")
    if scores:
        ax = axes[2]
        ax.hist(scores, bins=20, color="C0", alpha=0.7)
        ax.axvline(max(scores), color="C3", ls="--", label=f"exported {max(scores):.3f}")
        ax.set_xlabel("held-out score (the supernet's shared weights)")
        ax.set_ylabel(f"of {len(scores)} sampled architectures")
        ax.legend(loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (temp file, then rename) and free it, whatever happens."""
    import matplotlib.pyplot as plt
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), mode="wb")
    finally:
        plt.close(fig)
    return Path(path)


def _kind(label: str) -> str:
    """A label's cell kind: its prefix before ``/`` (``normal``, ``reduce``), or "" without one."""
    return label.split("/", 1)[0] if "/" in label else ""


def _kind_edges(edges: dict[str, list[str]], kind: str) -> list[tuple[str, list[str]]]:
    """The nodes of one cell kind, (InputChoice label, op label per input), in order: node i has i inputs."""
    return sorted(((label, ops) for label, ops in edges.items() if _kind(label) == kind), key=lambda e: len(e[1]))


def _steps(history: list[dict]) -> list[int]:
    """The x of each history entry: its step; the final weights (step None) come one after the previous."""
    xs, last = [], -1
    for entry in history:
        last = last + 1 if entry.get("step") is None else entry["step"]
        xs.append(last)
    return xs


def _groups(options: dict[str, list[str]], edges: dict[str, list[str]]) -> dict[str, list[list[str]]]:
    """Cell kind -> rows of labels to plot: a row per node (its incoming edges, a staircase for DARTS),
    then the labels no node claims, in rows as wide."""
    groups: dict[str, list[list[str]]] = {}
    for label in [*options, *edges]:
        groups.setdefault(_kind(label), [])
    for kind, rows in groups.items():
        for _, ops in _kind_edges(edges, kind):
            if any(op in options for op in ops):
                rows.append([op for op in ops if op in options])
        placed = {label for row in rows for label in row}
        rest = [label for label in options if _kind(label) == kind and label not in placed]
        width = max([len(row) for row in rows] + [5])
        rows += [rest[i:i + width] for i in range(0, len(rest), width)]
    return groups


def _colors(options: dict[str, list[str]]) -> dict[str, tuple]:
    """One colour per option name, the same in every panel and in the cell drawing."""
    import matplotlib
    names = list(dict.fromkeys(name for names in options.values() for name in names))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _chosen(value) -> set[int]:
    """The option indices ``arch`` chose for a label: one index, or a list of inputs."""
    if value is None:
        return set()
    return {value} if isinstance(value, int) else set(value)


def _plot_weights(ax, history: list[dict], steps: list[int], label: str, names: list[str], chosen: set[int],
                  colors: dict[str, tuple], top: float = 1.0) -> None:
    """One panel: the softmax weight of each option of ``label`` against step."""
    from matplotlib.ticker import MaxNLocator

    for o, name in enumerate(names):
        ys = [(entry["weights"].get(label) or [float("nan")] * len(names))[o] for entry in history]
        thick = o in chosen
        ax.plot(steps, ys, color=colors[name], lw=2.6 if thick else 1.0, zorder=3 if thick else 2,
                marker="o" if len(steps) == 1 else None, ms=3)
    ax.set_ylim(0, top)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _draw_cell(ax, nodes: list[tuple[str, list[str]]], options: dict[str, list[str]], arch: dict,
               colors: dict[str, tuple], size: tuple[float, float]) -> None:
    """The derived cell as in the DARTS paper's figures: inputs c_{k-2}, c_{k-1} on the left, the
    intermediate nodes 0..N-1 in a column, the output c_{k} on the right (dashed arrows: it concatenates
    every node). Each kept edge is an arrow in its op's colour, labelled with the op; an edge between two
    nodes bows out to the right of the column so it passes no box. Data units are inches (``size``)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    w, h = size
    box_w, box_h, font = 0.75, 0.4, 7
    gap = min(1.3, (h - 1.0) / max(len(nodes) - 1, 1))  # between nodes, top to bottom
    column = [(0.5 * w, h / 2 + gap * ((len(nodes) - 1) / 2 - i)) for i in range(len(nodes))]
    pos = [(box_w / 2 + 0.1, h / 2 + 0.7 * gap), (box_w / 2 + 0.1, h / 2 - 0.7 * gap), *column,
           (w - box_w / 2 - 0.1, h / 2)]
    names = ["$c_{k-2}$", "$c_{k-1}$", *map(str, range(len(nodes))), "$c_{k}$"]
    fills = ["#b4eeb4"] * 2 + ["lightblue"] * len(nodes) + ["palegoldenrod"]
    boxes = []
    for (x, y), name, fill in zip(pos, names, fills):
        box = FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.03",
                             fc=fill, ec="black", lw=0.8, zorder=3)
        ax.add_patch(box)
        ax.text(x, y, name, ha="center", va="center", fontsize=9, zorder=4)
        boxes.append(box)
    for i in range(len(nodes)):
        ax.add_patch(FancyArrowPatch(pos[2 + i], pos[-1], patchA=boxes[2 + i], patchB=boxes[-1], arrowstyle="-|>",
                                     mutation_scale=8, lw=0.8, ls="--", color="0.6", zorder=1))
    taken = [(x - box_w / 2, y - box_h / 2, x + box_w / 2, y + box_h / 2) for x, y in pos]
    where = {0: 0, 1: 1} | {len(ops): 2 + i for i, (_, ops) in enumerate(nodes)}  # state index -> box
    for i, (label, ops) in enumerate(nodes):
        for j in sorted(_chosen(arch.get(label))):
            if j >= len(ops) or j not in where:
                continue
            op, (a, b) = ops[j], (where[j], 2 + i)
            choice = arch.get(op)
            name = options[op][choice] if op in options and isinstance(choice, int) else op.split("/", 1)[-1]
            (xa, ya), (xb, yb) = pos[a], pos[b]
            bow = 0.0 if a < 2 else 0.45 + 0.3 * (ya - yb) / gap  # inches right of the column
            rad = -2 * bow / math.hypot(xb - xa, yb - ya)  # arc3: the curve's middle is rad/2 * length aside
            ax.add_patch(FancyArrowPatch(pos[a], pos[b], patchA=boxes[a], patchB=boxes[b], arrowstyle="-|>",
                                         connectionstyle=f"arc3,rad={rad:.3f}", mutation_scale=10, lw=1.3,
                                         color=colors.get(name, "black"), zorder=2))
            control = ((xa + xb) / 2 + 2 * bow, (ya + yb) / 2)  # the quadratic Bezier's control point
            x, y = _label_spot(pos[a], control, pos[b], (0.056 * font * len(name) / 7 + 0.12, 0.22), taken)
            ax.text(x, y, name, ha="center", va="center", fontsize=font, zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colors.get(name, "black"), "lw": 0.6})
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.set_aspect("equal")
    ax.axis("off")


def _label_spot(a: tuple[float, float], control: tuple[float, float], b: tuple[float, float],
                size: tuple[float, float], taken: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Where on the curve a-b (a quadratic Bezier) to centre a label of ``size``: the spot nearest 0.6 of the way
    (else beside the curve) that overlaps nothing in ``taken`` (else the least overlapping one), which it then joins."""
    def overlap(x, y):
        return sum(max(0.0, min(x + size[0] / 2, r[2]) - max(x - size[0] / 2, r[0]))
                   * max(0.0, min(y + size[1] / 2, r[3]) - max(y - size[1] / 2, r[1])) for r in taken)

    length = math.hypot(b[0] - a[0], b[1] - a[1]) or 1.0
    normal = ((a[1] - b[1]) / length, (b[0] - a[0]) / length)
    spots = [(x + side * normal[0], y + side * normal[1])
             for side in (0.0, 0.17, -0.17)  # on the curve if it can, else just beside it
             for x, y in (tuple((1 - t) ** 2 * p + 2 * t * (1 - t) * c + t ** 2 * q for p, c, q in zip(a, control, b))
                          for t in (0.6, 0.5, 0.7, 0.42, 0.78, 0.34, 0.26, 0.86))]
    x, y = min(spots, key=lambda s: overlap(*s))  # min keeps the first of equals
    taken.append((x - size[0] / 2, y - size[1] / 2, x + size[0] / 2, y + size[1] / 2))
    return x, y


def plot_latency_check(check: dict, path: Path, title: str = "") -> Path:
    """``supernet latency --check``: the table's prediction against the measured latency of each
    random subnet, with the y = x line; the figures in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    predicted = [a + check["overhead_ms"] for a in check["additive_ms"]]
    measured = check["measured_ms"]
    ax.scatter(measured, predicted, s=14, label=f"{check['subnets']} random subnets")
    lo, hi = min(measured + predicted), max(measured + predicted)
    ax.plot([lo, hi], [lo, hi], color="C3", lw=1, label="prediction = measurement")
    ax.set_xlabel("measured end to end (ms, median)")
    ax.set_ylabel("predicted by the table (ms)")
    ax.set_title(f"{title}\nMAPE {100 * check['mape']:.1f}% (leave-one-out {100 * check['mape_loo']:.1f}%), "
                 f"max {100 * check['max_error']:.1f}%, Kendall tau {check['kendall_tau']:.2f}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_pareto(engine, path: Path, title: str = "") -> Path:
    """``pareto.png`` of an NSGA-II search (``supernet.search.NSGA2Search``): every evaluated candidate's
    error against its first cost objective, the final front and generation 0's for comparison; and
    the front's hypervolume per generation. With more than two objectives the fronts are drawn as
    points: in this projection a member may look dominated by another that costs more elsewhere."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..search.nsga2 import RECORD_KEY

    metric = next(o for o in engine.objectives if o != "error")
    key, scale = RECORD_KEY[metric], _SCALES.get(metric, 1e6)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})

    def xy(records):
        return [r[key] / scale for r in records], [100 * r["top1_err"] for r in records]
    ax1.scatter(*xy(engine.results), s=8, color="0.6", alpha=0.5, label=f"evaluated ({len(engine.results)})")
    style = {"where": "post"} if len(engine.objectives) == 2 else None
    for front, color, name, ls in ((engine.front_at(0), "C0", "generation-0 front", "--"),
                                   (engine.front(), "C3", "final front", "-")):
        xs, ys = xy(sorted(front, key=lambda r: r[key]))
        if style:
            ax1.step(xs, ys, color=color, ls=ls, **style)
        ax1.scatter(xs, ys, color=color, s=18, zorder=3, label=f"{name} ({len(front)})")
    ax1.set_xlabel(_LABELS[metric])
    ax1.set_ylabel("supernet top-1 error on the validation split (%)")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="upper right")
    gens = [h["generation"] for h in engine.hypervolumes]
    ax2.plot(gens, [h["hypervolume"] for h in engine.hypervolumes], marker="o", ms=3, color="C3")
    ax2.set_xlabel("generation")
    ax2.set_ylabel(f"hypervolume ({', '.join(engine.objectives)}; normalised)")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{title}: objectives {', '.join(engine.objectives)}" if title else "")
    fig.tight_layout()
    return _save(fig, path)


_SCALES = {"latency": 1.0, "bitops": 1e9}  # the rest in millions
_LABELS = {"flops": "MFLOPs (multiply-accumulates)", "params": "parameters (M)", "latency": "predicted latency (ms)",
           "bitops": "GBitOps (MACs x weight bits x activation bits)", "size": "model size (MB)"}
