"""Measuring latency tables on the user's own target, and checking them against real networks.

Each unit option of the cost model (``supernet.cost.flops``) is fixed and timed alone at its real
input shape. The rest of the network (stem, head, the glue between choices) is one more entry,
timed as the whole fixed network with every unit replaced by a stub of its output shape. Each
entry is the median of ``runs`` timed calls after ``warmup`` calls; its spread (interquartile
range / median) is kept, and an entry whose spread is wider than ``max_spread`` is measured again
(up to ``retries`` times). ``check_table`` times K random subnets end to end and fits the overhead.

Backends: ``torch`` (eager, CPU with a thread count, or CUDA timed with events) and
``onnxruntime`` (CPU: each option exported alone and run in an ``InferenceSession`` with
``threads`` intra-op threads, one inter-op thread, sequential execution).
"""
from __future__ import annotations

import contextlib
import copy
import gc
import random
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace, fix
from ..export import dequantized, onnx_bytes
from ..nn.choices import FULL_PRECISION, Choice, LayerChoice, NoneChosen, gate_of
from ..nn.quantized import Quantized
from ..runtime.progress import progress_bar
from ..runtime.typed import ConfigError
from .flops import CostModel, Unit, forward_with_hooks, tabulate
from .latency import TIMING_DEFAULTS, LatencyTable, device_name, target_of, timing_problem
from .precision import STATES, PrecisionTerm, float_options, states


# --- timing ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_timing(threads: int):
    """``threads`` torch threads, no autograd and no garbage collection while timing."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with torch.inference_mode():
            yield
    finally:
        if gc_was:
            gc.enable()
        torch.set_num_threads(before)


def runner(module: nn.Module, inputs: list[torch.Tensor], backend: str, device: str, threads: int) -> Callable[[], float]:
    """A function that runs ``module(*inputs)`` once on the backend and returns its time in ms."""
    if backend == "onnxruntime":
        return ort_runner(onnx_bytes(module.cpu(), tuple(x.cpu() for x in inputs)), inputs, threads)
    module = module.to(device).eval()
    inputs = [x.to(device) for x in inputs]
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run_cuda() -> float:
            start.record()
            module(*inputs)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        return run_cuda

    def run_cpu() -> float:
        t0 = time.perf_counter()
        module(*inputs)
        return (time.perf_counter() - t0) * 1e3
    return run_cpu


def ort_runner(model, inputs: list[torch.Tensor], threads: int) -> Callable[[], float]:
    """One timed ``InferenceSession.run`` of an ONNX model (bytes or a path) on the CPU, with
    ``threads`` intra-op threads, one inter-op thread and sequential execution."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # no warnings about unused initialisers
    ort_session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                       providers=["CPUExecutionProvider"])
    feeds = {i.name: x.cpu().numpy() for i, x in zip(ort_session.get_inputs(), inputs)}

    def run() -> float:
        t0 = time.perf_counter()
        ort_session.run(None, feeds)
        return (time.perf_counter() - t0) * 1e3
    return run


def onnx_latency(path, input_shape: tuple[int, ...], threads: int = 1, batch: int = 1, runs: int = 100,
                 warmup: int = 10) -> dict:
    """The measured latency of an exported model file in ONNX Runtime on this CPU (what
    ``supernet export`` writes beside ``model.onnx``)."""
    import onnxruntime
    x = [torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))]
    with _quiet_timing(threads):
        ((ms, spread, _),) = measure([ort_runner(Path(path), x, threads)], runs, warmup, 0.2, 1)
    return {"file": Path(path).name, "backend": "onnxruntime", "device": "cpu", "device_name": device_name("cpu"),
            "threads": threads, "batch": batch, "input_shape": list(input_shape), "runs": runs, "median_ms": ms,
            "spread": spread, "versions": {"onnxruntime": onnxruntime.__version__}}


def measure(runs_of: list[Callable[[], float]], runs: int, warmup: int, max_spread: float, retries: int,
            seed: int = 0, bar=None) -> list[tuple[float, float, tuple[float, float]]]:
    """``(median ms, spread, (median of the even rounds, of the odd rounds))`` of each function,
    timed in interleaved rounds.

    Every round calls each function twice, in a fresh random order, and times the second call: the
    machine's drift (these VMs change speed by tens of % within minutes) then falls on all entries
    alike, while each timed call finds its weights in cache, as a deployed network run again and
    again does (a single cold call among hundreds of other entries measured a small network 3x
    slower than the same network timed alone in a loop, which is what ``supernet export``
    measures). After
    ``warmup`` untimed rounds come ``runs`` timed ones; the entries whose spread (interquartile
    range / median) is above ``max_spread`` get ``runs`` more rounds, up to ``retries`` times;
    their median is then over all their samples (keeping only the tightest attempt would take an
    entry's figure from another stretch of time than its neighbours').
    """
    check_timing(runs, warmup, max_spread, retries)
    rng = random.Random(seed)
    samples: list[list[float]] = [[] for _ in runs_of]
    out: list = [None] * len(runs_of)
    todo = list(range(len(runs_of)))
    for attempt in range(1 + retries):
        for r in range(warmup + runs):
            order = todo[:]
            rng.shuffle(order)
            for i in order:
                runs_of[i]()  # untimed: the entry's weights and buffers back in cache, as in a network run again and again
                ms = runs_of[i]()
                if r >= warmup:
                    samples[i].append(ms)
            if bar is not None:
                bar.update(1)
        for i in todo:
            xs = sorted(samples[i])
            med = statistics.median(xs)
            halves = (statistics.median(samples[i][0::2]), statistics.median(samples[i][1::2]))
            out[i] = (med, (xs[(3 * len(xs)) // 4] - xs[len(xs) // 4]) / med if med > 0 else 0.0, halves)
        todo = [i for i in todo if out[i][1] > max_spread]
        if not todo:
            break
    return out


def check_timing(runs: int, warmup: int, max_spread: float, retries: int, check: int = 0) -> None:
    """Refuse timing settings that cannot give a figure, before anything is timed.

    Raises:
        ValueError: naming the setting (and its ``supernet latency`` option) and the value given.
    """
    problem = timing_problem(runs, warmup, max_spread, retries)
    if problem:
        raise ValueError(f"latency timing: {problem}")
    if check != 0:
        check_subnets(check)


def check_subnets(k: int) -> None:
    """Refuse a check of ``k`` subnets unless ``k >= 3`` (fewer cannot fit the overhead and test it)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 3:
        raise ValueError(f"latency check (--check) must be 0 (no check) or at least 3 random subnets (to fit the "
                         f"overhead and test it), got {k!r}")


def _rounds(runs: int, warmup: int, retries: int) -> int:
    return (1 + retries) * (runs + warmup)


class _Stub(nn.Module):
    """Stands in for a unit while the rest of the network is timed: an output of the unit's shape
    that depends on the input, so that no exporter folds what follows into a constant."""

    def __init__(self, out_shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("zeros", torch.zeros(1, *out_shape[1:]))

    def forward(self, *xs):
        x = xs[0]
        return self.zeros + x.flatten(1)[:, :1].reshape(-1, *[1] * (self.zeros.dim() - 1))


class _Keeping(nn.Module):
    """A stub that holds a unit's own choices (their labels stay in the model) and runs the stub."""

    def __init__(self, stub: nn.Module, choices: list[nn.Module]):
        super().__init__()
        self.stub = stub
        self.choices = nn.ModuleList(choices)

    def forward(self, *xs):
        return self.stub(*xs)


def _stubbed(model: nn.Module, units: list[Unit]) -> nn.Module:
    """A copy of ``model`` whose units are choices among stubs (same labels, same gates)."""
    names = {id(m): name for name, m in model.named_modules()}
    out = copy.deepcopy(model)
    for unit in units:
        parent, _, child = names[id(unit.module)].rpartition(".")
        stub = _Stub(unit.out_shape)
        if isinstance(unit.module, LayerChoice):
            choice = LayerChoice([stub] * unit.module.n_options, label=unit.module.label)
        else:  # a block that declares a width choice: the stub keeps the choice, so its label stays
            choice = _Keeping(stub, [c for c in out.get_submodule(names[id(unit.module)]).children()
                                     if isinstance(c, Choice)])
        if gate_of(unit.module) is not None:
            choice.gate = gate_of(unit.module)
        setattr(out.get_submodule(parent) if parent else out, child, choice)
    return out


# --- building and checking ---------------------------------------------------------------------------
def build_table(model: nn.Module, input_shape: Optional[tuple[int, ...]] = None, backend: str = "torch",
                device: str = "cpu", threads: int = 1, batch: int = 1, runs: int = 50, warmup: int = 5,
                max_spread: float = 0.2, retries: int = 1, check: int = 0, seed: int = 0,
                space: Optional[str] = None, options: Optional[dict] = None, cost: Optional[CostModel] = None,
                progress: bool = True) -> LatencyTable:
    """Time every option of every choice of ``model`` (and the rest of it) on the target.

    With ``check=K``, K random subnets are timed end to end in the same rounds and the table is
    checked against them (``check_table``'s figures, in ``table.check``).
    ``cost``: the model's ``CostModel`` when one is at hand (its units are the table's units).
    """
    check_timing(runs, warmup, max_spread, retries, check)
    cost = cost or CostModel(model, input_shape)
    if any(isinstance(u.gate, NoneChosen) for u in cost.units):  # the ENAS micro cell's output convs
        raise ConfigError(f"latency tables do not support {space or 'this model'}: its NoneChosen-gated modules (the "
                          f"enas-micro cells' output convs) have no table entry; use FLOPs/params constraints on "
                          f"this space, or a space without them")
    target = target_of(model, cost.input_shape, backend, device, threads, batch, space, options)
    settings = {"runs": runs, "warmup": warmup, "max_spread": max_spread, "retries": retries}
    gen = torch.Generator().manual_seed(seed)

    def inputs(shapes):
        return [torch.randn(batch, *s[1:], generator=gen) for s in shapes]

    rest_labels = cost.groups[-1][0]
    archs = _random_archs(SearchSpace(model), check, seed)
    floats = float_options(cost.space)
    switched = {label: cost.space.choice(label).values for label in floats}  # their bit widths
    layer_entries: dict = {}  # a layer alone, by its form, input shape and state: timed once
    _enough_subnets(archs, check)
    with cost.measuring(model), _quiet_timing(threads):
        entries: list[tuple[nn.Module, list]] = []  # what to time: every table entry, then the check's subnets

        def entry(module: nn.Module, xs: list) -> tuple[list, list]:
            """The entry's index, and its layers' precision terms (their states' entries)."""
            entries.append((module, xs))
            return [len(entries) - 1], _precision_entries(module, xs, switched, entries, layer_entries)

        def index_unit(unit: Unit) -> dict:
            xs = inputs(unit.shapes)
            return {key: entry(cost.fixed_unit(unit, key), xs) for key in cost.combos(unit.labels)}

        # key -> (the entries that add up, the terms of their switchable layers)
        where = tabulate(cost.units, index_unit, lambda a, b: (a[0] + b[0], a[1] + b[1]))
        stubbed = _stubbed(model, cost.units)
        base = cost.probe_archs()[0]
        stub_labels = SearchSpace(stubbed).labels
        x = inputs([(1, *cost.input_shape)])
        rest = {}
        for key in cost.combos(rest_labels):
            arch = {l: v for l, v in {**base, **dict(zip(rest_labels, key))}.items() if l in stub_labels}
            rest[key] = entry(fix(stubbed, arch).eval(), x)
        where.append((list(rest_labels), rest, None))
        first_subnet = len(entries)
        entries += [(fix(model, arch).eval(), x) for arch in archs]
        timed = _time_entries(entries, backend, device, threads, settings, seed, progress,
                              f"latency table ({backend}, {device}, {threads} thread{'s' * (threads != 1)}, batch {batch}"
                              f"{f', {check} subnets' if check else ''})")
    groups = [(labels, {k: sum(timed[i][0] for i in ix) for k, (ix, _) in t.items()}, gate) for labels, t, gate in where]
    _resolved(groups, device)
    spread = [{k: max(timed[i][1] for i in ix + [j for *_, js in terms for j in js if j is not None])
               for k, (ix, terms) in t.items()} for _, t, _ in where]
    precision = [{k: tuple(PrecisionTerm(w, a, b, tuple(None if j is None else timed[j][0] for j in js))
                           for w, a, b, js in terms) for k, (_, terms) in t.items() if terms} for _, t, _ in where]
    table = LatencyTable(target, groups, spread, settings=settings, precision=precision if any(precision) else [],
                         float_options=floats)
    if check:
        _fit_check(table, archs, timed[first_subnet:], seed, runs, interleaved=True)
    return table


def _precision_entries(module: nn.Module, xs: list, switched: dict[str, list[int]], entries: list,
                       known: dict) -> list[tuple]:
    """For each quantized layer of ``module`` (a fixed table entry) whose precision an architecture
    switches (``switched``: the bit widths of each decision with 32 among them), ``(weight bits,
    act bits, base state, [entry index per state, or None])``; the layer alone in each state it can
    reach, at its input shape, is appended to ``entries`` unless ``known`` has the same layer at the
    same shape and state (the blocks' width options repeat many layers)."""
    layers = [m for m in module.modules() if isinstance(m, Quantized) and any(l in switched for l in m.labels)]
    if not layers:
        return []
    shapes: dict = {}

    def record(layer, args, out) -> None:
        shapes.setdefault(layer, args[0].shape)
    forward_with_hooks(module, layers, record, *xs)
    floats = {label: [b == FULL_PRECISION for b in bits] for label, bits in switched.items()}
    gen = torch.Generator().manual_seed(len(entries))
    out = []
    for m in (m for m in layers if m in shapes):  # a layer off this entry's path has no term
        w, a = (label if label is not None else b for label, b in zip(m.labels, (m.weight_bits, m.act_bits)))
        x = [torch.randn(shapes[m], generator=gen)]
        index: list = [None] * STATES
        for state in states(w, a, floats):
            layer = _layer_in_state(m, state, switched)
            same = (repr(layer.layer), layer.weight_bits < FULL_PRECISION, layer.act_bits < FULL_PRECISION,
                    layer.per_channel, tuple(shapes[m]))
            if same not in known:
                known[same] = len(entries)
                entries.append((layer, x))
            index[state] = known[same]
        out.append((w, a, 2 * (m.weight_bits == FULL_PRECISION) + (m.act_bits == FULL_PRECISION), index))
    return out


def _layer_in_state(m: Quantized, state: int, switched: dict[str, list[int]]) -> nn.Module:
    """The quantized layer ``m`` alone, its weight and input in float or quantized as ``state``
    says; quantized at its own width, or, where that is 32, at the first width below 32 of its
    decision (every width below 32 runs the same 8-bit kernels)."""
    def width(bits: int, label, in_float: bool) -> int:
        if in_float:
            return FULL_PRECISION
        return bits if bits != FULL_PRECISION else next(b for b in switched[label] if b != FULL_PRECISION)
    layer = Quantized(copy.deepcopy(m.layer), width(m.weight_bits, m.labels[0], state >= 2),
                      width(m.act_bits, m.labels[1], state % 2 == 1), m.per_channel, m.labels)
    layer.start_untrained()
    return layer.eval()


def _enough_subnets(archs: list, k: int) -> None:
    """A check of ``k`` subnets on a space too small to give 3 distinct ones is refused before timing."""
    if k and len(archs) < 3:
        raise ConfigError(f"latency check (--check {k}): this space has only {len(archs)} architectures; a check "
                          f"needs at least 3, so build the table without --check")


def _resolved(groups: list, device: str) -> None:
    """Refuse a table entry that timed at 0 ms: the clock did not resolve it, and a table file with it
    could not be read back."""
    for labels, table, _ in groups:
        for key, ms in table.items():
            if not ms > 0:
                raise ValueError(f"the latency of labels {labels} option {list(key)} timed at {ms!r} ms on {device}: "
                                 f"too short for the clock; time a larger batch (--batch)")


def _time_entries(entries, backend, device, threads, settings, seed, progress, desc) -> list[tuple[float, float]]:
    bar = progress_bar(total=len(entries), desc=f"{desc}: preparing", unit="entry", disable=not progress)
    with bar:
        runs_of = []
        for module, xs in entries:
            runs_of.append(runner(module, xs, backend, device, threads))
            bar.update(1)
    s = settings
    bar = progress_bar(total=_rounds(s["runs"], s["warmup"], s["retries"]), desc=f"{desc}: timing",
                       unit="round", disable=not progress)
    with bar:
        out = measure(runs_of, s["runs"], s["warmup"], s["max_spread"], s["retries"], seed, bar)
        bar.update(bar.total - bar.n)  # rounds that no wide spread needed
    return out


def _random_archs(space: SearchSpace, k: int, seed: int) -> list[Arch]:
    """``k`` distinct random architectures (fewer only if the space is smaller)."""
    rng = random.Random(seed)
    archs, seen = [], set()
    for _ in range(100 * k):
        if len(archs) == k:
            break
        arch = space.sample(rng)
        key = space.encode(arch)
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs


def check_table(model: nn.Module, table: LatencyTable, k: int = 20, seed: int = 0, progress: bool = True,
                cost: Optional[CostModel] = None) -> dict:
    """Time ``k`` random fixed subnets end to end on the table's target (now, on this machine), and
    compare them with the table; the result goes in ``table.check`` and ``table.overhead_ms``.

    ``build_table(check=K)`` does the same in the table's own rounds, so that drift between the
    two measurements cannot enter; this one also shows how far the table is from today's timings.
    """
    settings = {**TIMING_DEFAULTS, **table.settings}  # a table made in Python may not record them
    check_subnets(k)
    check_timing(settings["runs"], settings["warmup"], settings["max_spread"], settings["retries"])
    t = table.target
    cost = cost or CostModel(model, tuple(t["input_shape"]))
    table.require(target_of(model, cost.input_shape, t["backend"], t["device"], t["threads"], t["batch"],
                            t.get("space"), t.get("options")), where="the latency table")
    archs = _random_archs(SearchSpace(model), k, seed)
    _enough_subnets(archs, k)
    gen = torch.Generator().manual_seed(seed)
    x = [torch.randn(t["batch"], *cost.input_shape, generator=gen)]
    was_training = model.training
    try:
        with _quiet_timing(t["threads"]):
            entries = [(fix(model, arch).eval(), x) for arch in archs]
            timed = _time_entries(entries, t["backend"], t["device"], t["threads"], settings, seed, progress,
                                  f"check: {len(archs)} subnets end to end")
    finally:
        model.train(was_training)
    return _fit_check(table, archs, timed, seed, settings["runs"], interleaved=False)


def _fit_check(table: LatencyTable, archs: list[Arch], timed: list, seed: int, runs: int, interleaved: bool) -> dict:
    """Fit ``table.overhead_ms`` (the median of measured - additive sum) and store the comparison:
    mean absolute % error and max error with that overhead, the same with the overhead fitted on the
    other k-1 subnets (leave-one-out, the honest figure), without any overhead, and the Kendall tau
    of the ranking, beside the tau of the measurement against its own repeat (even against odd
    rounds): what noise allows any predictor to reach on this machine."""
    from scipy.stats import kendalltau

    if len(archs) < 3:
        raise ValueError(f"a check needs at least 3 subnets to fit and test the overhead, got {len(archs)}")
    measured = [ms for ms, _, _ in timed]
    additive = [table.predict(a, overhead=False) for a in archs]
    residual = [m - a for m, a in zip(measured, additive)]
    overhead = statistics.median(residual)

    def errors(over):
        return [abs(a + o - m) / m for a, o, m in zip(additive, over, measured)]

    fitted = errors([overhead] * len(archs))
    loo = errors([statistics.median(residual[:i] + residual[i + 1:]) for i in range(len(archs))])
    raw = errors([0.0] * len(archs))
    table.overhead_ms = overhead
    table.check = {"subnets": len(archs), "seed": seed, "runs": runs, "interleaved": interleaved,
                   "overhead_ms": overhead, "mape": statistics.mean(fitted), "max_error": max(fitted),
                   "mape_loo": statistics.mean(loo), "max_error_loo": max(loo),
                   "mape_without_overhead": statistics.mean(raw),
                   "kendall_tau": float(kendalltau(additive, measured).statistic),
                   # the measurement against itself (even rounds vs odd rounds): the tau that noise allows
                   "kendall_tau_repeat": float(kendalltau(*zip(*(h for _, _, h in timed))).statistic),
                   "measured_ms": measured, "additive_ms": additive, "spread": [s for _, s, _ in timed], "archs": archs}
    return table.check


def check_line(check: dict) -> str:
    """One line of a check's figures, as ``supernet latency --check`` prints them."""
    return (f"check on {check['subnets']} random subnets: mean abs error {100 * check['mape']:.1f}% (max "
            f"{100 * check['max_error']:.1f}%), leave-one-out {100 * check['mape_loo']:.1f}% (max "
            f"{100 * check['max_error_loo']:.1f}%), without the overhead {100 * check['mape_without_overhead']:.1f}%; "
            f"Kendall tau {check['kendall_tau']:.3f} (the measurement against its own repeat: "
            f"{check.get('kendall_tau_repeat', float('nan')):.3f}); fitted overhead {check['overhead_ms']:+.4g} ms")


def compare_latency(model: nn.Module, sample: torch.Tensor, threads: int = 1, runs: int = 100, warmup: int = 10,
                    opset: int = 18, seed: int = 0) -> dict:
    """The ONNX Runtime latency on this CPU of ``model`` exported as QDQ (``int8_ms``) and of the same
    network in float (``dequantized(model)``, ``float_ms``), in ms per call on ``sample``.

    Both ONNX Runtime models run with ``threads`` intra-op threads and are timed in the same interleaved rounds
    (``measure``: medians, each timed call a warm one), so that the machine's
    drift falls on both alike; ``ratio`` is ``int8_ms / float_ms`` (below 1: the QDQ file is faster).
    """
    model = model.cpu().eval()
    files = [onnx_bytes(m, (sample,), opset) for m in (model, dequantized(model))]
    with _quiet_timing(threads):
        (q, q_spread, _), (f, f_spread, _) = measure([ort_runner(b, [sample], threads) for b in files],
                                                     runs, warmup, max_spread=0.2, retries=1, seed=seed)
    return {"int8_ms": q, "float_ms": f, "ratio": q / f, "threads": threads, "runs": runs, "batch": len(sample),
            "spread": {"int8": q_spread, "float": f_spread}}
