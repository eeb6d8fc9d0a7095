"""Re-exports one version again and again; used by the re-export concurrency test.

``python -m tests.predictors.reexport_writer EXPORT_DIR WRITES``

Writes version 1 once, then version 2 up to `WRITES` times, stopping early
once ``EXPORT_DIR.stop`` exists. Write k has output bias (k, -k) and
records ``metadata['write'] = k``, so a prediction tells which write's
weights it ran and the assets which write they came from. Touches
``EXPORT_DIR.started`` after the first write of version 2 and writes the
last write's k to ``EXPORT_DIR.last`` before exiting.
"""

from __future__ import annotations

import sys
from pathlib import Path

from t2r.export import export_saved_model

from .export_writer import model_for_version


def main(export_dir: str, writes: int) -> None:
    export_saved_model(model_for_version(1), export_dir, global_step=1, metadata={"write": 1})
    model = model_for_version(2)
    k = 1
    for k in range(2, writes + 2):
        model.load_state_dict(model_for_version(k).state_dict())
        export_saved_model(model, export_dir, global_step=2, metadata={"write": k})
        if k == 2:
            Path(export_dir + ".started").touch()
        if Path(export_dir + ".stop").exists():
            break
    Path(export_dir + ".last").write_text(str(k))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
