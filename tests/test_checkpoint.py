"""Original .ckpt loading: a random checkpoint in the authors' key layout loads through both paths
(direct .ckpt and convert -> diffusers folder) with identical outputs; bad files give one-line errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import PEER_KIT as KIT

from zero1to3.camera import RelativePose
from zero1to3.checkpoint import CheckpointError, read_state_dict
from zero1to3.pipeline import Zero123Pipeline
from zero1to3.quantized import dequantize_state_dict, quantize_state_dict

needs_kit = pytest.mark.usefixtures("peer_kit")  # fails under CI, skips elsewhere, when the kit is missing


@pytest.fixture(scope="module")
def random_ldm_ckpt(tmp_path_factory):
    """A fresh random checkpoint in the LDM key layout (the kit's keys and shapes, new seeded values)."""
    state = torch.load(KIT / "tiny.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    g = torch.Generator().manual_seed(1234)
    fresh = {}
    for key, value in state.items():
        if value.is_floating_point() and not key.startswith(("betas", "alphas", "sqrt", "log_one", "posterior")):
            fresh[key] = torch.randn(value.shape, generator=g) * 0.05
        else:
            fresh[key] = value
    path = tmp_path_factory.mktemp("ckpt") / "random.ckpt"
    torch.save({"state_dict": fresh, "global_step": 1}, path)
    return path


def _load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Zero123Pipeline.from_pretrained(path, original_config=KIT / "tiny.yaml", **kw)


@needs_kit
def test_ckpt_and_converted_folder_give_identical_outputs(random_ldm_ckpt, tmp_path):
    from zero1to3.cli import main

    direct = _load(random_ldm_ckpt)
    assert main(["convert", str(random_ldm_ckpt), str(tmp_path / "conv"), "--original-config",
                 str(KIT / "tiny.yaml")]) == 0
    converted = Zero123Pipeline.from_pretrained(tmp_path / "conv")
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    # the kit's checkpoints carry no CLIP, so both paths get the same embedding directly
    clip = torch.randn(1, 1, 768, generator=torch.Generator().manual_seed(1))
    kwargs = dict(num_samples=1, num_inference_steps=4, seed=3, clip_embedding=clip)
    a = direct(image, RelativePose.from_degrees(10, 40), **kwargs).array
    b = converted(image, RelativePose.from_degrees(10, 40), **kwargs).array
    np.testing.assert_array_equal(a, b)
    assert converted.image_size == 128
    # --unet-int8: the UNet as stored int8 is exactly the dequantised weights of the direct load
    assert main(["convert", str(random_ldm_ckpt), str(tmp_path / "int8"), "--original-config",
                 str(KIT / "tiny.yaml"), "--unet-int8"]) == 0
    small = Zero123Pipeline.from_pretrained(tmp_path / "int8")
    expected = dequantize_state_dict(quantize_state_dict(direct.unet.state_dict()))
    assert all(torch.equal(small.unet.state_dict()[k], v) for k, v in expected.items())


@needs_kit
def test_ema_and_main_copies_differ(random_ldm_ckpt):
    ema = _load(random_ldm_ckpt)
    main_copy = _load(random_ldm_ckpt, use_ema=False)
    state = torch.load(random_ldm_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    w = state["model_ema.diffusion_modelinput_blocks00weight"]
    torch.testing.assert_close(ema.unet.conv_in.weight.detach(), w)
    torch.testing.assert_close(main_copy.unet.conv_in.weight.detach(), state["model.diffusion_model.input_blocks.0.0.weight"])


def test_truncated_file_one_line_error(tmp_path):
    bad = tmp_path / "trunc.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(10)}}, bad)
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CheckpointError) as info:
        read_state_dict(bad)
    assert "expected the original Zero-1-to-3 checkpoint" in str(info.value) and "\n" not in str(info.value)


def test_foreign_file_one_line_error(tmp_path):
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(CheckpointError, match="model.diffusion_model") as info:
        read_state_dict(foreign)
    assert "\n" not in str(info.value)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(text)


def test_missing_ema_copy_says_so(tmp_path):
    from zero1to3.checkpoint import ema_unet_state

    with pytest.raises(CheckpointError, match="use_ema=False"):
        ema_unet_state({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)})


def test_official_config_matches_spec():
    from zero1to3.checkpoint import official_original_config

    unet = official_original_config()["model"]["params"]["unet_config"]["params"]
    assert unet["in_channels"] == 8 and unet["model_channels"] == 320 and unet["channel_mult"] == [1, 2, 4, 4]
    assert unet["num_heads"] == 8 and unet["context_dim"] == 768 and unet["image_size"] == 32
