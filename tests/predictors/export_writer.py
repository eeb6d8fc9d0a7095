"""Writes TinyModel export versions; used by the concurrency test as a subprocess.

``python -m tests.predictors.export_writer EXPORT_DIR FIRST LAST [HANG_AT]``

Version v has output bias (v, -v), so a prediction tells which weights it
came from. With HANG_AT, the writer stops while writing that version, after
the program and weights but before the assets, touches ``EXPORT_DIR.hanging``
and waits to be killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import t2r.export.writer
from t2r.export import export_saved_model

from ..export.models import TinyModel


def model_for_version(version: int) -> TinyModel:
    torch.manual_seed(0)
    model = TinyModel()
    with torch.no_grad():
        model.out.bias.copy_(torch.tensor([float(version), -float(version)]))
    return model


def main(export_dir: str, first: int, last: int, hang_at: int | None) -> None:
    write_assets = t2r.export.writer.write_t2r_assets_to_file

    def hang_before_assets(assets, path):
        if assets.global_step == hang_at:
            Path(export_dir + ".hanging").touch()
            time.sleep(600)  # killed here, mid-write
        write_assets(assets, path)

    t2r.export.writer.write_t2r_assets_to_file = hang_before_assets
    model = TinyModel()
    for version in range(first, last + 1):
        model.load_state_dict(model_for_version(version).state_dict())
        export_saved_model(model, export_dir, global_step=version, exports_to_keep=3)
        time.sleep(0.05)


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]) if len(sys.argv) > 4 else None,
    )
