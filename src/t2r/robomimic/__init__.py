"""robomimic on t2r: HDF5 demonstrations, the Algo lifecycle, rollouts.

Kept light on purpose: importing ``t2r.robomimic`` loads neither robosuite nor
h5py; import the submodules (``t2r.robomimic.hdf5``, ``.dataset``, ...) you need.
"""

from __future__ import annotations
