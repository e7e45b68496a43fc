"""``plot_arch_history``: the DARTS search plot renders for a cell space and for a space without cells;
``plot_search``: its title says what the score is."""
import numpy as np
import pytest
from PIL import Image

from supernet.pipeline.plots import plot_arch_history, plot_search

OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
       "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


def _softmax(rng, n):
    e = np.exp(rng.normal(size=n) * 2)
    return (e / e.sum()).tolist()


def _history(rng, options, steps=(0, 10, 20, None)):
    return [{"step": s, "weights": {label: _softmax(rng, len(names)) for label, names in options.items()}}
            for s in steps]


def darts_history(seed=0, nodes=4):
    """What ``DartsStrategy.arch_history`` writes for 2 cell kinds of ``nodes`` nodes and the 8 ops."""
    rng = np.random.default_rng(seed)
    options, edges, arch = {}, {}, {}
    for kind in ("normal", "reduce"):
        for i in range(2, 2 + nodes):
            ops = [f"{kind}/op_{i}_{j}" for j in range(i)]
            edges[f"{kind}/input_{i}"] = ops
            arch[f"{kind}/input_{i}"] = sorted(rng.choice(i, 2, replace=False).tolist())
            for op in ops:
                options[op] = list(OPS)
                arch[op] = int(rng.integers(1, len(OPS)))
    return {"strategy": "darts", "options": options, "edges": edges, "history": _history(rng, options),
            "arch": arch}


@pytest.mark.slow
def test_darts_cells_plot(tmp_path):
    data = darts_history()
    out = plot_arch_history(data, tmp_path / "search" / "search.png", title="darts on darts-cifar")
    assert out == tmp_path / "search" / "search.png"
    assert out.stat().st_size > 10_000
    with Image.open(out) as im:
        w, h = im.size
    assert 1000 < w < 2500 and 1000 < h < 3000, (w, h)
    assert [p.name for p in out.parent.iterdir()] == ["search.png"]  # no temp file left behind


def test_plot_without_edges(tmp_path):
    rng = np.random.default_rng(1)
    options = {"conv1": ["conv3x3", "conv5x5"], "conv2": ["conv3x3", "conv5x5", "max_pool"], "input_1": [0, 1, 2]}
    data = {"strategy": "darts", "options": options, "edges": {}, "history": _history(rng, options),
            "arch": {"conv1": 1, "conv2": 0, "input_1": [0, 2]}}
    out = plot_arch_history(data, tmp_path / "search.png")
    with Image.open(out) as im:
        w, h = im.size
    assert 300 < w < 1500 and 150 < h < 1000, (w, h)
    assert out.stat().st_size > 5_000


def _titles(monkeypatch):
    """The suptitles of the figures the plots save."""
    from supernet.pipeline import plots
    titles, save = [], plots._save

    def saving(fig, path, **kw):
        titles.append(fig._suptitle.get_text())
        return save(fig, path, **kw)
    monkeypatch.setattr(plots, "_save", saving)
    return titles


def test_search_plot_title_says_the_score_is_the_supernets_on_validation(tmp_path, monkeypatch):
    titles = _titles(monkeypatch)
    results = [{"generation": g, "top1": t, "flops": 1e6 + g} for g, t in ((0, 0.5), (0, 0.8234), (1, 0.7))]
    plot_search(results, tmp_path / "search.png", upper=2e6, title="evolution search on shufflenet-cifar")
    plot_search(results, tmp_path / "plain.png", recalibrated=False)
    assert titles == ["evolution search on shufflenet-cifar\n"
                      "best supernet validation top-1 82.34% (BN-recalibrated, inherited weights)",
                      "best supernet validation top-1 82.34% (inherited weights, no BN recalibration)"]
