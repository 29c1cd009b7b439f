"""`recsys plan --serving`: one replica's table bytes are what a model of that layout holds
once built (its tables' weights and their row-wise Adagrad state, counted from the modules
themselves, or an export's quantized rows), and a replica larger than --memory-gb exits 1."""

from __future__ import annotations

import torch
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from typer.testing import CliRunner

from recsys.cli import app
from recsys.models.quant import quantize
from recsys.models.registry import build_model, model_class
from recsys.train.config import PlanRequest
from recsys.train.plan import _meta_layout, serving


def _held_bytes(model: torch.nn.Module) -> int:
    """The tables' weights and optimizer state as the fused modules allocate them."""
    total = 0
    for module in model.modules():
        if isinstance(module, FusedEmbeddingBagCollection):
            total += sum(v.numel() * v.element_size() for v in module.state_dict().values())
            total += sum(m._emb_module.momentum1_host.numel() * 4 for m in module._emb_modules)
    return total


def test_a_replicas_tables_are_what_the_built_model_holds():
    for model in ("mmoe", "star"):
        req = PlanRequest(preset="tiny", model=model, serving=True)
        report = serving(req)
        built = build_model(model, _meta_layout(req), model_class(model).Config())
        assert sum(t["bytes"] for t in report["tables"]) == _held_bytes(built) > 0
        assert report["replica_bytes"] > report["cache_bytes"] > 0


def test_a_replica_larger_than_the_memory_given_exits_1():
    result = CliRunner().invoke(app, ["plan", "--preset", "full", "--serving", "--memory-gb",
                                      "8"])
    assert result.exit_code == 1 and "DOES NOT FIT in 8 GB" in result.output
    fits = CliRunner().invoke(app, ["plan", "--preset", "tiny", "--serving"])
    assert fits.exit_code == 0 and "FITS in 80 GB" in fits.output
    two = CliRunner().invoke(app, ["plan", "--serving", "--dtype", "int2"])
    assert two.exit_code == 2 and "--dtype int2 with serving" in two.output
    int8 = CliRunner().invoke(app, ["plan", "--preset", "full", "--serving", "--dtype", "int8"])
    assert "recsys export --dtype int8" in int8.output


def test_an_exported_replicas_tables_are_what_the_quantized_model_holds():
    for dtype in ("int8", "int4", "fp16"):
        req = PlanRequest(preset="tiny", model="din", serving=True, dtype=dtype)
        report = serving(req)
        built = build_model("din", _meta_layout(req), model_class("din").Config())
        _, stored = quantize(built, _meta_layout(req), dtype)
        assert sum(t["bytes"] for t in report["tables"]) == stored > 0


def test_one_process_keeps_fp16_tables_in_fp32():
    """The fact `recsys train` says and `--serving` counts on: an unsharded model's tables are
    fp32 whatever its table_dtype (when TorchRec passes the type, this fails: say fp16)."""
    req = PlanRequest(preset="tiny", model="mmoe")
    model = build_model("mmoe", _meta_layout(req), model_class("mmoe").Config(table_dtype="fp16"))
    stored = {m._emb_module.weights_host.dtype for module in model.modules()
              if isinstance(module, FusedEmbeddingBagCollection) for m in module._emb_modules}
    assert stored == {torch.float32}
