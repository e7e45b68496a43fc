"""``search.png``: the score per generation, and the score against FLOPs with the constraint line."""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_write


def plot_search(results: list[dict], path: Path, flops_max: float | None = None, flops_min: float | None = None,
                title: str = "") -> Path:
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
    ax1.set_ylabel("supernet top-1 on held-out split (%)")
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    flops = [r["flops"] / 1e6 for r in results]
    sc = ax2.scatter(flops, top1, c=gens, s=8, cmap="viridis")
    fig.colorbar(sc, ax=ax2, label="generation")
    for bound, name in ((flops_max, "max"), (flops_min, "min")):
        if bound is not None:
            ax2.axvline(bound / 1e6, color="C3", ls="--", label=f"FLOPs {name} {bound / 1e6:g}M")
    if flops_max is not None or flops_min is not None:
        ax2.legend(loc="lower right")
    ax2.set_xlabel("MFLOPs (multiply-accumulates)")
    ax2.set_ylabel("top-1 (%)")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)
    return Path(path)
