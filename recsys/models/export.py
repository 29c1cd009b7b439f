"""A trained model as a self-contained scoring program: its tables in an inference type
(models.quant), traced by TorchScript into a program that `torch.jit.load` runs with FBGEMM's
operators alone, no recsys code.

TorchScript's tracer rather than `torch.export`: the program replays the model's tensor
operations, FBGEMM's inference kernel included, and takes any batch size, where `torch.export`
would need every FBGEMM operator's shape function and a symbolic size for each of the history's
masks. What tracing cannot see, a branch on the data, is checked after it: the program is run
against the model on rows of other sizes, scenarios and histories than it was traced on, and
refused where they differ.

The program's methods, each (ids, dense, vectors, scenario) -> one logit a row, as the model's
`forward`:
    forward        rows each with its own history (offline scoring)
    score_request  one request's candidates, the history row 0's (looked up once)
"""

from __future__ import annotations

import itertools
import warnings

import torch
from torch import nn

from recsys.dataset.batch import Batch, kjt
from recsys.dataset.layout import Layout
from recsys.errors import UsageError
from recsys.models.base import Model
from recsys.models.quant import quantize
from recsys.schema import ITEM_ID, SCENARIO

TOLERANCE = 1e-5  # the program against the model it was traced from, on the same tables


class ExportError(UsageError):
    pass


class Program(nn.Module):
    """The model behind plain tensors: what the traced program's methods take."""

    def __init__(self, model: Model, layout: Layout):
        super().__init__()
        self.model = model
        self.keys, self.widths = list(layout.kjt_keys), layout.widths
        self.history = len(layout.history_keys)

    def batch(self, ids, dense, vectors, scenario, one_history: bool) -> Batch:
        return Batch(kjt(self.keys, ids, self.widths, self.history, one_history), ids, dense,
                     dense.new_zeros(ids.shape[0]), scenario, vectors, self.widths,
                     self.history, one_history)

    def forward(self, ids, dense, vectors, scenario):
        return self.model(self.batch(ids, dense, vectors, scenario, False))

    def score_request(self, ids, dense, vectors, scenario):
        return self.model(self.batch(ids, dense, vectors, scenario, True))


def export_program(model: Model, layout: Layout, dtype: str
                   ) -> tuple[torch.jit.ScriptModule, dict]:
    """`model` (changed in place: its tables become `dtype`'s) as a traced program, and the
    facts of its tables: bytes in fp32 and as stored."""
    if model.capabilities.adapts:
        raise ExportError(f"{model.name} adapts to each user's clicks at test time, in Python "
                          f"outside its forward: it has no program to export; export a model "
                          f"without `adapt` in `recsys models`")
    model.eval()
    fp32_bytes, stored_bytes = quantize(model, layout, dtype)
    program = Program(model, layout).eval()
    generator = torch.Generator().manual_seed(0)
    traced_on = {"forward": example_inputs(layout, 16, generator),
                 "score_request": example_inputs(layout, 16, generator, one_request=True)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants: checked below
        traced = torch.jit.trace_module(program, traced_on, check_trace=False)
        for rows, one_request, scenario in ((37, False, None), (1, False, None),
                                            (53, True, len(layout.scenarios) - 1), (5, True, 0)):
            inputs = example_inputs(layout, rows, generator, one_request, scenario)
            method = "score_request" if one_request else "forward"
            want = getattr(program, method)(*inputs)
            try:
                got = getattr(traced, method)(*inputs)
            except RuntimeError:  # a size the trace kept as a constant
                got = None
            if got is None or got.shape != want.shape or \
                    not torch.allclose(got, want, atol=TOLERANCE, rtol=0):
                raise ExportError(f"{model.name or type(model).__name__}: its forward "
                                  f"branches on the data (the traced program's {method} "
                                  f"differs from the model on {rows} rows of other values "
                                  f"than it was traced on), so it cannot be exported; serve "
                                  f"its run instead")
    return traced, {"table_bytes_fp32": fp32_bytes, "table_bytes": stored_bytes}


def example_inputs(layout: Layout, rows: int, generator: torch.Generator,
                   one_request: bool = False, scenario: int | None = None) -> tuple:
    """Rows of random valid inputs (ids, dense, vectors, scenario): each ID within its table,
    multi-valued features and histories of random lengths; `one_request`: a served request's
    candidates, every row with row 0's user, context, history and (`scenario`) scenario."""
    def draw(high: int, shape) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=generator)

    ids = torch.empty(rows, layout.id_columns, dtype=torch.long)
    columns = [c for c in layout.inputs if c.matrix == "ids"]
    for c in columns:
        if not c.history:
            ids[:, c.start:c.start + c.width] = draw(c.size, (rows, c.width))
            if c.width > 1:  # padded with -1 past each row's values
                ids[:, c.start:c.start + c.width][
                    torch.arange(c.width) >= draw(c.width + 1, (rows, 1))] = -1
    # the history's lists are of the same clicks: one length a row
    held = torch.arange(layout.history_length) < draw(layout.history_length + 1, (rows, 1))
    for c in columns:
        if c.history:
            ids[:, c.start:c.start + c.width] = draw(c.size, (rows, c.width)).masked_fill(
                ~held, -1)
    n = len(layout.scenarios)
    scenarios = draw(n, (rows,)) if scenario is None else torch.full((rows,), scenario)
    if SCENARIO in layout.sparse:
        ids[:, layout.slot(SCENARIO)] = scenarios
    dense = torch.randn(rows, len(layout.dense), generator=generator)
    vectors = torch.randn(rows, sum(g.width for g in layout.vectors), generator=generator)
    if one_request:  # all but the candidate item's own features are row 0's
        owners = dict(zip(layout.sparse, layout.owners))
        shared = [j for c in columns if c.history or owners.get(c.name, "item") != "item"
                  for j in range(c.start, c.start + c.width)]
        ids[:, shared] = ids[:1, shared]
        users = [j for j, owner in enumerate(layout.dense_owners) if owner != "item"]
        dense[:, users] = dense[:1, users]
        starts = [0, *itertools.accumulate(g.width for g in layout.vectors)]
        for g, start in zip(layout.vectors, starts):
            if g.owner != ITEM_ID:
                vectors[:, start:start + g.width] = vectors[:1, start:start + g.width]
    return ids, dense, vectors, scenarios
