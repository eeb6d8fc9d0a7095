"""t2r: Tensor2Robot rebuilt on PyTorch.

Models declare what they consume and produce as specs (`t2r.specs`); the input
pipeline, checks, exports and policies are derived from those specs.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
