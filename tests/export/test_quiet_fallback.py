"""The TorchScript fallback does not print torch's FX graph dump."""

from __future__ import annotations

import logging

import torch

from t2r.export import export_saved_model, load_export
from t2r.export.layout import TORCHSCRIPT

from .models import DataDependentModel


def test_torchscript_fallback_prints_no_fx_graph(tmp_path, capfd, caplog):
    torch.manual_seed(0)
    with caplog.at_level(logging.DEBUG, logger="t2r.export.program"):
        version = export_saved_model(DataDependentModel(), tmp_path, global_step=1)
    assert load_export(version, trust_torchscript=True).program_format == TORCHSCRIPT
    out, err = capfd.readouterr()
    assert "def forward" not in out + err
    assert "Unable to find user code" not in out + err
    # The dump is not lost: it is in the debug log.
    assert any("def forward" in r.getMessage() for r in caplog.records)
