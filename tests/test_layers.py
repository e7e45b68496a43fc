"""The package's floors (docs/architecture.md): every import runs down or stays in its room, and no
strategy imports another. Read from the code's own import statements, function-level ones included."""
import ast
from pathlib import Path

import supernet

ROOT = Path(supernet.__file__).parent
# Lowest first. A module may import its own room and the rooms below it, never one above.
FLOORS = ["runtime", "nn", "arch", "data", "export", "ranking", "spaces", "quant", "cost", "strategies", "train", "search",
          "pipeline", "oneshot", "demo", "cli", "__main__", "__init__"]
# The shared pieces of strategies/; every other module there is one strategy and imports none of the others.
STRATEGY_HELPERS = {"state", "__init__", "base", "latency_loss", "controller"}


def room(module: str) -> str:
    """``supernet.cost.flops`` -> ``cost``; the package's own ``__init__`` is its face, on top."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports(path: Path) -> list[str]:
    """The ``supernet`` modules ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package, or an __init__'s own package
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:  # from . import x: x is a module of the package
                found += [f"{target}.{a.name}" for a in node.names]
            else:
                found.append(target)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m == "supernet" or m.startswith("supernet.")]


def test_every_import_runs_down_or_stays_in_its_room():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        mine = FLOORS.index(room(module))
        for target in imports(path):
            theirs = room(target)
            if theirs != room(module) and FLOORS.index(theirs) > mine:
                upward.append(f"{module} imports {target}")
    assert not upward, upward
    assert {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or
            (p.is_dir() and (p / "__init__.py").exists())} == set(FLOORS)  # every room is on a floor


def test_no_strategy_imports_another():
    strategies = {p.stem for p in (ROOT / "strategies").glob("*.py")} - STRATEGY_HELPERS
    for name in strategies:
        taken = {t.split(".")[2] for t in imports(ROOT / "strategies" / f"{name}.py") if t.startswith("supernet.strategies.")}
        assert not taken & strategies, (name, taken & strategies)
