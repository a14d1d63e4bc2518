"""8-bit weight storage: values against hand-computed cases, exact round trips, sharding, loader errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zero1to3.camera import RelativePose
from zero1to3.model import build_unet, preset
from zero1to3.pipeline import ModelLoadError, Zero123Pipeline
from zero1to3.quantized import (SCALE_SUFFIX, QuantizedFormatError, dequantize_state_dict, dequantize_tensor,
                                load_quantized, quantize_state_dict, quantize_tensor, read_quantized,
                                save_quantized, weight_files)


def test_quantize_hand_computed_row() -> None:
    # row peak 2.54 -> scale fp16(0.02); -2.54 -> -127, 0.01 -> round(0.5) = 0 (half to even), 1.0 -> 50
    w = torch.tensor([[2.54, -2.54, 0.01, 1.0], [0.0, 0.0, 0.0, 0.0]])
    values, scale = quantize_tensor(w)
    assert scale.dtype == torch.float16 and values.dtype == torch.int8
    assert float(scale[0]) == float(torch.tensor(0.02, dtype=torch.float16))
    assert float(scale[1]) == 1.0  # an all-zero row keeps a usable scale
    s = float(scale[0])
    assert values[0].tolist() == [round(2.54 / s), -round(2.54 / s), 0, round(1.0 / s)]
    assert abs(values[0, 0]) == 127 and values[1].tolist() == [0, 0, 0, 0]
    back = dequantize_tensor(values, scale)
    assert torch.all((back - w).abs() <= s / 2 + 1e-7)


@pytest.mark.parametrize("shape", [(16, 8), (8, 4, 3, 3), (5, 300)])
def test_requantizing_dequantized_weights_is_exact(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g) * torch.logspace(-4, 1, shape[0])[:, *([None] * (len(shape) - 1))]
    values, scale = quantize_tensor(w)
    values2, scale2 = quantize_tensor(dequantize_tensor(values, scale))
    assert torch.equal(values, values2) and torch.equal(scale, scale2)
    assert values.abs().amax(dim=tuple(range(1, len(shape)))).eq(127).all()  # every row's peak is +-127


def test_state_dict_keeps_small_and_integer_tensors() -> None:
    state = {"conv.weight": torch.randn(64, 32), "conv.bias": torch.randn(64), "tiny.weight": torch.randn(4, 4),
             "steps": torch.tensor([3], dtype=torch.int64)}
    stored = quantize_state_dict(state)
    assert stored["conv.weight"].dtype == torch.int8 and ("conv.weight" + SCALE_SUFFIX) in stored
    assert stored["conv.bias"].dtype == torch.float16 and stored["tiny.weight"].dtype == torch.float16
    assert stored["steps"].dtype == torch.int64
    back = dequantize_state_dict(stored)
    assert set(back) == set(state)
    assert torch.equal(back["conv.bias"], state["conv.bias"].half().float())


def test_unet_folder_round_trip_sharded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    unet = build_unet(preset("tiny"))
    paths = save_quantized(unet, tmp_path / "unet", max_shard_bytes=2 * 10**6)
    assert len(paths) > 1 and weight_files(tmp_path / "unet") == paths
    assert all(p.stat().st_size < 2 * 10**6 + 10**5 for p in paths)
    assert oct(paths[0].stat().st_mode & 0o777) == "0o644"
    loaded = load_quantized(type(unet), tmp_path / "unet")
    # the loaded weights are exactly the stored ones, and storing them again gives the same bytes' content
    save_quantized(loaded, tmp_path / "again", max_shard_bytes=2 * 10**6)
    first, second = read_quantized(tmp_path / "unet"), read_quantized(tmp_path / "again")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    original = unet.state_dict()
    for name, tensor in loaded.state_dict().items():
        peak = original[name].float().abs().reshape(original[name].shape[0], -1).amax(1) if tensor.dim() >= 2 else None
        if peak is not None and tensor.numel() >= 1024:
            bound = (peak / 127 * 0.5 * 1.001 + 1e-12).reshape(-1, *([1] * (tensor.dim() - 1)))
            assert torch.all((tensor - original[name]).abs() <= bound), name


def test_pipeline_int8_save_load_matches_dequantised_weights(tiny_pipe: Zero123Pipeline, tmp_path: Path) -> None:
    tiny_pipe.save_pretrained(tmp_path / "m", dtype=torch.float16, unet_weight_bits=8)
    assert not list((tmp_path / "m" / "unet").glob("diffusion_pytorch_model*"))
    pipe = Zero123Pipeline.from_pretrained(tmp_path / "m")
    expected = dequantize_state_dict(quantize_state_dict(tiny_pipe.unet.state_dict()))
    assert all(torch.equal(pipe.unet.state_dict()[k], v) for k, v in expected.items())
    pose = [RelativePose.from_degrees(d_polar=0, d_azimuth=90, d_radius=0)]
    image = np.full((64, 64, 3), 255, np.uint8)
    image[16:48, 20:44] = (200, 40, 40)
    out = pipe(image, pose, num_inference_steps=3, preprocess=False, seed=0).array
    assert out.shape[-3:] == (64, 64, 3)
    # a later fp16 save into the same folder replaces the int8 files instead of leaving both
    pipe.save_pretrained(tmp_path / "m", dtype=torch.float16)
    assert not weight_files(tmp_path / "m" / "unet")
    Zero123Pipeline.from_pretrained(tmp_path / "m")


def test_foreign_or_incomplete_int8_files_are_refused(tiny_pipe: Zero123Pipeline, tmp_path: Path) -> None:
    tiny_pipe.save_pretrained(tmp_path / "m", unet_weight_bits=8)
    unet = tmp_path / "m" / "unet"
    (unet / "weights_int8.safetensors").unlink()
    save_file({"x": torch.zeros(2)}, str(unet / "weights_int8-00001-of-00002.safetensors"),
              metadata={"format": "zero1to3-int8-per-channel", "version": "1"})
    with pytest.raises(ModelLoadError, match="1 of 2"):
        Zero123Pipeline.from_pretrained(tmp_path / "m")
    for f in weight_files(unet):
        f.unlink()
    save_file({"x": torch.zeros(2)}, str(unet / "weights_int8.safetensors"))
    with pytest.raises(ModelLoadError, match="not a zero1to3-int8"):
        Zero123Pipeline.from_pretrained(tmp_path / "m")
    save_file({"x": torch.zeros(2)}, str(unet / "weights_int8.safetensors"),
              metadata={"format": "zero1to3-int8-per-channel", "version": "1"})
    with pytest.raises(ModelLoadError, match="do not match config.json"):
        Zero123Pipeline.from_pretrained(tmp_path / "m")
    with pytest.raises(QuantizedFormatError):
        quantize_state_dict({"a" + SCALE_SUFFIX: torch.zeros(2, 2)})
