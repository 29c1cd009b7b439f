"""Memory refusals on the functions that make them, with the numbers a person acts on."""

from __future__ import annotations

import pytest

from recsys.antm2c import ANTM2C
from recsys.dataset.layout import Layout
from recsys.dataset.meta import DatasetMeta
from recsys.errors import UsageError
from recsys.models.base import ModelConfig
from recsys.train.loop import _check_batch_fits


def test_a_batch_beyond_memory_is_refused_with_the_numbers():
    """Only a split with that many rows makes such a batch: checked on the function."""
    layout = Layout.from_meta(DatasetMeta(ANTM2C, 10, 10))
    with pytest.raises(UsageError, match=r"batch_size 1,000,000,000: needs about [\d,.]+ "
                                         r"GiB of memory, [\d,.]+ GiB there"):
        _check_batch_fits(layout, ModelConfig(), 10 ** 9, 10 ** 9)
    _check_batch_fits(layout, ModelConfig(), 10 ** 9, 2048)  # a split smaller than the batch
    _check_batch_fits(layout, ModelConfig(), 2048, 10 ** 9)
