"""``rank/rank.png``: the supernet's score against stand-alone top-1, and every score's Kendall τ
beside the ceiling the ground truth's own repeatability sets."""
from __future__ import annotations

from pathlib import Path

from ..runtime.io import atomic_write
from .report import BASELINES, SCORES


def plot_rank(rows: list[dict], report: dict, path: Path, title: str = "") -> Path:
    """Left: supernet score (x) against stand-alone test top-1 (y) under the first seed, the
    strategy's pick and the best marked. Right: Kendall τ-b of every score, the ceiling as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = [r for r in rows if r["seed"] == report["seed"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    ax1.scatter([100 * r["supernet_score"] for r in first], [100 * r["standalone"] for r in first], s=18,
                label=f"architecture ({len(first)})")
    for key, marker, color, name in (("pick", "*", "C3", "the strategy's pick"), ("best", "D", "C2", "best alone")):
        if key in report:
            r = next(r for r in first if r["index"] == report[key]["index"])
            ax1.scatter([100 * r["supernet_score"]], [100 * r["standalone"]], s=160 if marker == "*" else 60,
                        marker=marker, color=color, label=name, zorder=3)
    tau = report.get("kendall_tau")
    ax1.set_title(f"supernet Kendall tau-b {'-' if tau is None else f'{tau:+.2f}'}")
    ax1.set_xlabel("supernet top-1 on the validation split (%, BN-recalibrated)")
    ax1.set_ylabel("stand-alone test top-1 (%)")
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)

    named = [(n, report[n]) for n, _ in SCORES if n in report] + \
            [(n, report["baselines"][n]) for n, _ in BASELINES if n in report["baselines"]]
    names = [n for n, _ in named]
    taus = [f["kendall_tau"] or 0.0 for _, f in named]
    ax2.barh(names, taus, color=["C0" if n in dict(SCORES) else "0.6" for n in names])
    ceiling = report["ceiling"].get("kendall_tau")
    if ceiling is not None:
        ax2.axvline(ceiling, color="C3", ls="--", label=f"ceiling (seed vs seed) {ceiling:+.2f}")
        ax2.legend(loc="lower right")
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set_xlim(-1, 1)
    ax2.invert_yaxis()
    ax2.set_xlabel("Kendall tau-b against stand-alone top-1")
    ax2.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    finally:
        plt.close(fig)
    return Path(path)
