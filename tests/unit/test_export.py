"""`recsys export`'s program (models.export) on hand-made batches: every model that has a
forward to export scores as its eager self, row by row and one request at a time, in fp32
exactly and in int8 within its rounding; what cannot be exported is refused by name;
the tables shrink as the issue's sizes say; and the program, saved, scores the same in a
process that cannot import recsys at all."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from recsys.dataset.loader import rows_batch
from recsys.models.base import FusedEmbeddingBagCollection
from recsys.models.dnn_mixed import DNNMixed
from recsys.models.export import ExportError, example_inputs, export_program
from recsys.models.quant import quantize
from recsys.models.registry import MODELS, build_model
from synthetic import layout, one_request
from test_model_contract import CASES, _model

torch.set_num_threads(1)
EXPORTED = [c for c in CASES if not MODELS[c[0]].capabilities.adapts]


def _request(data, lay):
    """The first 64 rows as one request (synthetic.one_request)."""
    return rows_batch(one_request(data, lay), lay, slice(0, 64), one_history=True)


def _inputs(batch):
    return batch.ids, batch.dense, batch.vectors, batch.scenario


@pytest.mark.parametrize("name,history", EXPORTED)
def test_the_program_scores_as_the_model(name, history):
    eager, lay, data, _ = _model(name, history)
    exported, _, _, _ = _model(name, history)  # the same seed: the same weights and counts
    eager.eval()
    program, tables = export_program(exported, lay, "fp32")
    assert not any(isinstance(m, FusedEmbeddingBagCollection) for m in exported.modules())
    rows, request = rows_batch(data, lay, slice(0, 300)), _request(data, lay)
    with torch.no_grad():
        torch.testing.assert_close(program(*_inputs(rows)), eager(rows), rtol=0, atol=1e-5)
        torch.testing.assert_close(program.score_request(*_inputs(request)), eager(request),
                                   rtol=0, atol=1e-5)
    quantized, _, _, _ = _model(name, history)
    program, tables = export_program(quantized, lay, "int8")
    with torch.no_grad():
        gap = (torch.sigmoid(program(*_inputs(rows))) - torch.sigmoid(eager(rows))).abs().max()
    assert 0 < gap < 0.01, gap  # rounded, and by little


@pytest.mark.parametrize("dim,most", [(16, 0.55), (64, 0.35)])
def test_int8_tables_take_at_most_the_issues_share_of_fp32(dim, most):
    lay = layout("attention")
    model = build_model("din", lay, MODELS["din"].Config(embedding_dim=dim))
    fp32, int8 = quantize(model, lay, "int8")
    assert int8 / fp32 <= most, (int8, fp32)
    model = build_model("din", lay, MODELS["din"].Config(embedding_dim=dim))
    _, int4 = quantize(model, lay, "int4")
    assert int4 < int8


def test_a_multi_valued_feature_is_pooled_by_its_mean_as_in_training():
    lay = layout()
    lay = dataclasses.replace(lay, sparse=(*lay.sparse, "item_tags"),
                              num_embeddings=(*lay.num_embeddings, 8),
                              widths=(*lay.widths, 3), owners=(*lay.owners, "item"))
    torch.manual_seed(0)
    eager = build_model("mmoe", lay).eval()
    exported = build_model("mmoe", lay)
    exported.load_state_dict(eager.state_dict())
    program, _ = export_program(exported, lay, "fp32")
    ids, dense, vectors, scenario = example_inputs(lay, 50, torch.Generator().manual_seed(1))
    assert (ids[:, -3:] < 0).any() and (ids[:, -3:] >= 0).sum(1).gt(1).any()
    from recsys.dataset.batch import Batch, kjt

    batch = Batch(kjt(lay.kjt_keys, ids, lay.widths), ids, dense, torch.zeros(50), scenario,
                  vectors, lay.widths)
    with torch.no_grad():
        torch.testing.assert_close(program(ids, dense, vectors, scenario), eager(batch),
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", [n for n, c in MODELS.items() if c.capabilities.adapts])
def test_a_model_that_adapts_outside_its_forward_is_refused_by_name(name):
    model, lay, _, _ = _model(name)
    with pytest.raises(ExportError, match=f"^{name} adapts"):
        export_program(model, lay, "int8")


class Branchy(DNNMixed):
    """A forward that asks the data a question in Python: a trace keeps one answer."""

    def forward(self, batch):
        logits = super().forward(batch)
        return logits + 1 if bool(batch.dense[0, 0] > 0) else logits


def test_a_forward_that_branches_on_the_data_is_refused():
    lay = layout()
    with pytest.raises(ExportError, match="branches on the data"):
        export_program(Branchy(lay, Branchy.Config()), lay, "fp32")


SCORE_ELSEWHERE = """
import sys
sys.modules["recsys"] = None  # any import of recsys fails
import fbgemm_gpu, torch
folder = sys.argv[1]
program = torch.jit.load(folder + "/program.pt")
inputs, request, want = torch.load(folder + "/rows.pt")
with torch.no_grad():
    got = program(*inputs), program.score_request(*request)
assert all(torch.equal(g, w) for g, w in zip(got, want)), "scores differ"
print("same scores", len(got[0]) + len(got[1]))
"""


def test_the_program_scores_the_same_where_recsys_cannot_be_imported(tmp_path):
    lay = layout("attention")
    torch.manual_seed(0)
    model = build_model("din", lay, MODELS["din"].Config(embedding_dim=16))
    program, _ = export_program(model, lay, "int8")
    generator = torch.Generator().manual_seed(2)
    inputs = example_inputs(lay, 41, generator)
    request = example_inputs(lay, 23, generator, one_request=True, scenario=1)
    with torch.no_grad():
        want = program(*inputs), program.score_request(*request)
    torch.jit.save(program, str(tmp_path / "program.pt"))
    torch.save((inputs, request, want), tmp_path / "rows.pt")
    done = subprocess.run([sys.executable, "-c", SCORE_ELSEWHERE, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "same scores 64" in done.stdout
