"""A stand-in latency table for tests: the cost model's FLOPs groups read as milliseconds (flops/1e6),
with the structure of ``supernet.latency.LatencyTable`` (groups, overhead_ms, predict)."""
from supernet.cost import CostModel


class StandInTable:
    def __init__(self, model, input_shape=None, scale=1e-6, overhead_ms=0.0):
        cost = CostModel(model, input_shape)
        self.groups = [(list(labels), {k: f * scale for k, (f, _) in table.items()}, gate)
                       for labels, table, gate in cost.groups]
        self.overhead_ms = overhead_ms

    def predict(self, arch):
        return self.overhead_ms + sum(entries[tuple(arch[l] for l in labels)] for labels, entries, gate in self.groups
                                      if gate is None or gate[1] in arch[gate[0]])


class StandInCost:
    """What a strategy reads of the run's cost model: ``latency_table``."""

    def __init__(self, table):
        self.latency_table = table
