"""Tensor2Robot's spec system on PyTorch.

A model declares the tensors it consumes and produces as `ExtendedTensorSpec`s
(shape without batch, dtype, serialized feature name, flags) gathered in a
`TensorSpecStruct`. Input pipelines, checks, exports and policies derive from
them. Names and semantics follow ``tensor2robot.utils.tensorspec_utils``; code
that did ``from tensor2robot.utils import tensorspec_utils`` can do
``from t2r import specs as tensorspec_utils``.

String specs (T2R's ``tf.string``) have dtype `string` (also spelt ``'string'``,
``bytes``, ``str``, ``np.object_``); their data is a numpy object array of
``bytes``, never a torch tensor.
"""

from __future__ import annotations

from t2r.specs.assets import (
    T2R_ASSETS_FILENAME,
    T2R_PBTXT_ASSETS_FILENAME,
    T2RAssets,
    load_t2r_assets_to_file,
    parse_t2r_assets,
    t2r_assets_to_pbtxt,
    write_t2r_assets_to_file,
)
from t2r.specs.dtypes import (
    SpecDType,
    StringDType,
    as_spec_dtype,
    as_torch_dtype,
    dtype_name,
    is_string_dtype,
    numpy_dtype,
    string,
)
from t2r.specs.errors import AssetsError, MissingKeyError, SpecError
from t2r.specs.extended_tensor_spec import (
    ExtendedTensorSpec,
    is_encoded_image_spec,
    shapes_compatible,
)
from t2r.specs.structure import (
    add_sequence_length_specs,
    assert_equal,
    assert_equal_spec_or_tensor,
    assert_required,
    assert_sequence_lengths,
    assert_valid_spec_structure,
    copy_tensorspec,
    filter_required_flat_tensor_spec,
    filter_spec_structure_by_dataset,
    flatten_spec_structure,
    is_flat_spec_or_tensors_structure,
    map_structure,
    map_structure_with_paths,
    maybe_ignore_batch,
    pack_flat_sequence_to_spec_structure,
    tensorspec_from_tensors,
    validate_and_flatten,
    validate_and_pack,
)
from t2r.specs.tensor_spec_struct import TensorSpecStruct
from t2r.specs.tensors import (
    cast_bfloat16_to_float32,
    cast_float32_to_bfloat16,
    is_string_array,
    make_constant_numpy,
    make_random_numpy,
    make_random_tensors,
    pad_or_clip_tensor_to_spec_shape,
    replace_dtype,
    to_tensors,
)

__all__ = [
    "T2R_ASSETS_FILENAME",
    "T2R_PBTXT_ASSETS_FILENAME",
    "AssetsError",
    "ExtendedTensorSpec",
    "MissingKeyError",
    "SpecDType",
    "SpecError",
    "StringDType",
    "T2RAssets",
    "TensorSpecStruct",
    "add_sequence_length_specs",
    "as_spec_dtype",
    "as_torch_dtype",
    "assert_equal",
    "assert_equal_spec_or_tensor",
    "assert_required",
    "assert_sequence_lengths",
    "assert_valid_spec_structure",
    "cast_bfloat16_to_float32",
    "cast_float32_to_bfloat16",
    "copy_tensorspec",
    "dtype_name",
    "filter_required_flat_tensor_spec",
    "filter_spec_structure_by_dataset",
    "flatten_spec_structure",
    "is_encoded_image_spec",
    "is_flat_spec_or_tensors_structure",
    "is_string_array",
    "is_string_dtype",
    "load_t2r_assets_to_file",
    "make_constant_numpy",
    "make_random_numpy",
    "make_random_tensors",
    "map_structure",
    "map_structure_with_paths",
    "maybe_ignore_batch",
    "numpy_dtype",
    "pack_flat_sequence_to_spec_structure",
    "pad_or_clip_tensor_to_spec_shape",
    "parse_t2r_assets",
    "replace_dtype",
    "shapes_compatible",
    "string",
    "t2r_assets_to_pbtxt",
    "tensorspec_from_tensors",
    "to_tensors",
    "validate_and_flatten",
    "validate_and_pack",
    "write_t2r_assets_to_file",
]
