"""A stand-in latency table for tests: the cost model's FLOPs groups read as milliseconds (flops x scale),
as a real ``LatencyTable`` attached to the model's ``CostModel`` (what the pipeline hands a strategy)."""
from supernet.cost import CostModel
from supernet.cost import LatencyTable


def standin_cost(model, input_shape=None, scale=1e-6, overhead_ms=0.0) -> CostModel:
    cost = CostModel(model, input_shape)
    groups = [(list(labels), {k: f * scale for k, (f, _) in table.items()}, gate) for labels, table, gate in cost.groups]
    spread = [{k: 0.0 for k in table} for _, table, _ in groups]
    cost.attach_latency(LatencyTable({"backend": "flops-stand-in"}, groups, spread, overhead_ms))
    return cost
