from __future__ import annotations

import pytest
import torch

from t2r.modes import ModeKeys
from t2r.preprocessors import (
    ImagePreprocessor,
    PhotometricDistortion,
    SpecTransformationPreprocessor,
    center_crop,
    is_float_image_spec,
)
from t2r.specs import ExtendedTensorSpec, SpecError, TensorSpecStruct

B = 4


def pose_env_features(mode: str) -> TensorSpecStruct:
    """T2R pose_env's regression model features: a float32 (64, 64, 3) JPEG image."""
    del mode
    return TensorSpecStruct(
        state=ExtendedTensorSpec((64, 64, 3), torch.float32, name="state/image", data_format="jpeg")
    )


def pose_env_labels(mode: str) -> TensorSpecStruct:
    del mode
    return TensorSpecStruct(
        target_pose=ExtendedTensorSpec((2,), torch.float32, name="target_pose"),
        reward=ExtendedTensorSpec((1,), torch.float32, name="reward"),
    )


def multi_features(mode: str) -> TensorSpecStruct:
    spec = TensorSpecStruct()
    spec["camera/rgb"] = ExtendedTensorSpec((8, 8, 3), torch.float32, name="rgb")
    spec["camera/depth"] = ExtendedTensorSpec((8, 8, 1), torch.float32, name="depth")
    spec["episode"] = ExtendedTensorSpec(
        (8, 8, 3), torch.float32, name="episode", is_sequence=True, data_format="png"
    )
    spec["wrist"] = ExtendedTensorSpec((8, 8, 3), torch.float32, name="wrist", is_optional=True)
    spec["pose"] = ExtendedTensorSpec((2,), torch.float32, name="pose")
    spec["not_image"] = ExtendedTensorSpec((4, 4, 2), torch.float32, name="not_image")
    spec["uint8_image"] = ExtendedTensorSpec((8, 8, 3), torch.uint8, name="raw")
    return spec


def pose_env_data(batch: int = B, size: int = 64) -> dict:
    return {"state": torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)}


def pose_env_label_data(batch: int = B) -> dict:
    return {"target_pose": torch.rand(batch, 2), "reward": torch.rand(batch, 1)}


# ------------------------------------------------------------------ specs
def test_is_float_image_spec():
    assert is_float_image_spec(ExtendedTensorSpec((8, 8, 3), torch.float32))
    assert is_float_image_spec(ExtendedTensorSpec((8, 8, 1), torch.bfloat16))
    assert not is_float_image_spec(ExtendedTensorSpec((8, 8, 3), torch.uint8))
    assert not is_float_image_spec(ExtendedTensorSpec((8, 8, 2), torch.float32))
    assert not is_float_image_spec(ExtendedTensorSpec((None, 8, 3), torch.float32))
    assert not is_float_image_spec(ExtendedTensorSpec((8, 3), torch.float32))
    assert not is_float_image_spec(ExtendedTensorSpec(None, torch.float32))
    assert not is_float_image_spec(ExtendedTensorSpec((2, 8, 8, 3), torch.float32))
    assert is_float_image_spec(
        ExtendedTensorSpec((2, 8, 8, 3), torch.float32, data_format="jpeg", varlen_default_value=0)
    )


def test_is_a_spec_transformation_preprocessor():
    assert issubclass(ImagePreprocessor, SpecTransformationPreprocessor)


@pytest.mark.parametrize("mode", ModeKeys.ALL)
def test_pose_env_in_spec_is_uint8_jpeg_of_the_model_size(mode):
    pre = ImagePreprocessor(pose_env_features, pose_env_labels)
    in_spec = pre.get_in_feature_specification(mode)
    image = in_spec["state"]
    assert image.dtype == torch.uint8
    assert image.shape == (64, 64, 3)
    assert image.name == "state/image"
    assert image.data_format == "jpeg"
    assert pre.get_out_feature_specification(mode) == pose_env_features(mode)
    assert pre.get_in_label_specification(mode) == pose_env_labels(mode)


def test_in_specs_of_many_kinds_of_features():
    pre = ImagePreprocessor(multi_features, in_size=(10, 12))
    in_spec = pre.get_in_feature_specification(ModeKeys.TRAIN)
    for key in ("camera/rgb", "camera/depth", "episode", "wrist"):
        assert in_spec[key].dtype == torch.uint8, key
        assert in_spec[key].shape[:2] == (10, 12), key
    assert in_spec["camera/depth"].shape == (10, 12, 1)
    assert in_spec["camera/rgb"].data_format == "jpeg"
    assert in_spec["episode"].data_format == "png"  # the model's own format is kept
    assert in_spec["episode"].is_sequence
    assert in_spec["wrist"].is_optional
    model = multi_features(ModeKeys.TRAIN)
    for key in ("pose", "not_image", "uint8_image"):
        assert in_spec[key] == model[key]
        assert in_spec[key].name == model[key].name


def test_image_keys_select_images_and_are_checked():
    pre = ImagePreprocessor(multi_features, image_keys=["camera/rgb"], in_size=10)
    in_spec = pre.get_in_feature_specification(ModeKeys.EVAL)
    assert in_spec["camera/rgb"].dtype == torch.uint8
    assert in_spec["camera/depth"].dtype == torch.float32
    with pytest.raises(SpecError, match=r"'missing'.*not a model feature"):
        ImagePreprocessor(multi_features, image_keys=["missing"]).get_in_feature_specification(
            ModeKeys.EVAL
        )
    with pytest.raises(SpecError, match=r"'not_image' \(spec name 'not_image'\) is not a"):
        ImagePreprocessor(multi_features, image_keys=["not_image"]).get_in_feature_specification(
            ModeKeys.EVAL
        )


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"crop_size \(12, 12\) does not fit in in_size"):
        ImagePreprocessor(pose_env_features, in_size=10, crop_size=12)
    pre = ImagePreprocessor(pose_env_features, in_size=(32, 32))
    with pytest.raises(SpecError, match=r"'state'.*\(64, 64\).*\(32, 32\)"):
        pre.get_in_feature_specification(ModeKeys.TRAIN)
    with pytest.raises(ValueError, match="in_size"):
        ImagePreprocessor(pose_env_features, in_size=(1, 2, 3))


# -------------------------------------------------------------- end to end
@pytest.mark.parametrize("mode", ModeKeys.ALL)
@pytest.mark.parametrize("with_labels", [True, False])
def test_pose_env_converts_uint8_to_float(mode, with_labels):
    pre = ImagePreprocessor(pose_env_features, pose_env_labels)
    data = pose_env_data()
    target = pose_env_label_data() if with_labels else None
    features, labels = pre.preprocess(data, target, mode)
    assert features.state.dtype == torch.float32
    assert features.state.shape == (B, 64, 64, 3)
    torch.testing.assert_close(features.state, data["state"].float() / 255)
    if with_labels:
        assert labels is not None
        assert labels.target_pose is target["target_pose"]
        assert labels.reward is target["reward"]
    else:
        assert labels is None


def test_pose_env_rejects_float_images_with_a_named_error():
    pre = ImagePreprocessor(pose_env_features, pose_env_labels)
    with pytest.raises(SpecError) as info:
        pre.preprocess({"state": torch.rand(B, 64, 64, 3)}, None, ModeKeys.TRAIN)
    message = str(info.value)
    assert "ImagePreprocessor input features (mode 'train')" in message
    assert "'state' (spec name 'state/image')" in message
    assert "uint8" in message and "float32" in message
    with pytest.raises(SpecError, match=r"'state'.*\(64, 64, 3\).*\(60, 64, 3\)"):
        pre.preprocess({"state": pose_env_data()["state"][:, :60]}, None, ModeKeys.EVAL)


def test_eval_center_crops_and_is_deterministic():
    pre = ImagePreprocessor(pose_env_features, pose_env_labels, in_size=72, seed=0)
    data = pose_env_data(size=72)
    first, _ = pre.preprocess(data, pose_env_label_data(), ModeKeys.EVAL)
    second, _ = pre.preprocess(data, None, ModeKeys.EVAL)
    assert torch.equal(first.state, second.state)
    expected = center_crop(data["state"], 64).float() / 255
    torch.testing.assert_close(first.state, expected)


def test_train_random_crops_per_example():
    pre = ImagePreprocessor(pose_env_features, pose_env_labels, in_size=(80, 72), seed=0)
    # Every example is the same image, so different crops come from different offsets.
    image = torch.randint(0, 256, (1, 80, 72, 3), dtype=torch.uint8)
    data = {"state": image.expand(16, 80, 72, 3)}
    features, labels = pre.preprocess(data, pose_env_label_data(16), ModeKeys.TRAIN)
    assert features.state.shape == (16, 64, 64, 3)
    assert labels is not None
    distinct = {tuple(x.flatten()[:32].tolist()) for x in features.state}
    assert len(distinct) > 4
    # Each output is a window of the input.
    crops = image[0].float().unfold(0, 64, 1).unfold(1, 64, 1)  # (17, 9, 3, 64, 64)
    windows = crops.permute(0, 1, 3, 4, 2).reshape(-1, 64, 64, 3) / 255
    for x in features.state[:3]:
        assert ((windows - x).abs().amax(dim=(1, 2, 3)) < 1e-6).any()


def test_train_is_reproducible_with_a_seed():
    data = pose_env_data(size=70)

    def run(seed: int) -> torch.Tensor:
        pre = ImagePreprocessor(
            pose_env_features,
            pose_env_labels,
            in_size=70,
            distortion=PhotometricDistortion(),
            seed=seed,
        )
        return pre.preprocess(data, None, ModeKeys.TRAIN)[0].state

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_train_without_seed_follows_torch_manual_seed():
    pre = ImagePreprocessor(pose_env_features, in_size=70, distortion=PhotometricDistortion())
    assert pre.generator is None
    data = pose_env_data(size=70)
    torch.manual_seed(11)
    first = pre.preprocess(data, None, ModeKeys.TRAIN)[0].state
    torch.manual_seed(11)
    assert torch.equal(first, pre.preprocess(data, None, ModeKeys.TRAIN)[0].state)


def test_distortion_only_in_train():
    pre = ImagePreprocessor(
        pose_env_features, pose_env_labels, distortion=PhotometricDistortion(), seed=0
    )
    data = pose_env_data()
    plain = data["state"].float() / 255
    for mode in (ModeKeys.EVAL, ModeKeys.PREDICT):
        torch.testing.assert_close(pre.preprocess(data, None, mode)[0].state, plain)
    distorted = pre.preprocess(data, pose_env_label_data(), ModeKeys.TRAIN)[0].state
    assert not torch.allclose(distorted, plain, atol=1e-3)
    assert distorted.min() >= 0 and distorted.max() <= 1


def test_crop_size_then_resize_to_the_model_size():
    pre = ImagePreprocessor(pose_env_features, in_size=(96, 128), crop_size=(80, 80))
    data = {"state": torch.full((2, 96, 128, 3), 100, dtype=torch.uint8)}
    data["state"][:, :, :24] = 0  # outside the centre crop's columns (24..104)
    for mode in (ModeKeys.EVAL, ModeKeys.TRAIN):
        features, _ = pre.preprocess(data, None, mode)
        assert features.state.shape == (2, 64, 64, 3)
    features, _ = pre.preprocess(data, None, ModeKeys.EVAL)
    torch.testing.assert_close(features.state, torch.full((2, 64, 64, 3), 100 / 255))


def test_many_images_sequences_optionals_and_passthrough():
    pre = ImagePreprocessor(multi_features, in_size=(10, 12), seed=3)
    data = {
        "camera": {
            "rgb": torch.randint(0, 256, (B, 10, 12, 3), dtype=torch.uint8),
            "depth": torch.randint(0, 256, (B, 10, 12, 1), dtype=torch.uint8),
        },
        "episode": torch.randint(0, 256, (B, 5, 10, 12, 3), dtype=torch.uint8),
        "pose": torch.rand(B, 2),
        "not_image": torch.rand(B, 4, 4, 2),
        "uint8_image": torch.randint(0, 256, (B, 8, 8, 3), dtype=torch.uint8),
    }
    for mode in ModeKeys.ALL:
        features, labels = pre.preprocess(data, None, mode)
        assert labels is None
        assert features["camera/rgb"].shape == (B, 8, 8, 3)
        assert features["camera/depth"].shape == (B, 8, 8, 1)
        assert features["episode"].shape == (B, 5, 8, 8, 3)
        assert features["episode"].dtype == torch.float32
        assert features.get("wrist") is None
        assert features["pose"] is data["pose"]
        assert features["not_image"] is data["not_image"]
        assert features["uint8_image"] is data["uint8_image"]
    # In TRAIN the frames of one episode share their crop.
    features, _ = pre.preprocess(data, None, ModeKeys.TRAIN)
    episode = data["episode"].float() / 255
    for b in range(B):
        matches = [
            (top, left)
            for top in range(3)
            for left in range(5)
            if torch.allclose(features["episode"][b], episode[b, :, top : top + 8, left : left + 8])
        ]
        assert len(matches) == 1


def test_bfloat16_model_images():
    def spec_fn(mode):
        return {"image": ExtendedTensorSpec((4, 4, 3), torch.bfloat16, name="image")}

    pre = ImagePreprocessor(spec_fn)
    data = {"image": torch.randint(0, 256, (2, 4, 4, 3), dtype=torch.uint8)}
    features, _ = pre.preprocess(data, None, ModeKeys.EVAL)
    assert features.image.dtype == torch.bfloat16


def test_forward_and_module_behaviour():
    pre = ImagePreprocessor(pose_env_features, pose_env_labels, distortion=PhotometricDistortion())
    assert list(pre.state_dict()) == []
    assert "distortion=PhotometricDistortion" in repr(pre)
    features, labels = pre(pose_env_data())
    assert labels is None and features.state.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_preprocess_on_cuda_matches_cpu_with_the_same_seed():
    data = pose_env_data(size=72)

    def run(device: str) -> torch.Tensor:
        pre = ImagePreprocessor(
            pose_env_features, in_size=72, distortion=PhotometricDistortion(), seed=5
        ).to(device)
        moved = {"state": data["state"].to(device)}
        out = pre.preprocess(moved, None, ModeKeys.TRAIN)[0].state
        assert out.device.type == torch.device(device).type
        return out.cpu()

    torch.testing.assert_close(run("cuda"), run("cpu"), atol=1e-4, rtol=0)
