from __future__ import annotations

from tests.export.fixtures import pose_export  # noqa: F401  (a session fixture)
