"""8-bit weight storage for shipped models: per-output-channel symmetric int8 with fp16 scales.

Why: the embedded model travels inside the package (and to the GPU machine with the whole project), so its
bytes are capped; int8 storage halves an fp16 UNet at a measured cost (docs/model_card.md), which buys a
wider UNet in the same budget. Only storage is 8-bit: weights are dequantised once on load and the model
runs in fp32/fp16 as usual.

Layout of a quantised component folder (diffusers ``ModelMixin`` components, e.g. ``unet/``)::

    config.json                                  # the usual diffusers config
    weights_int8.safetensors                     # or weights_int8-00001-of-0000N.safetensors shards

Each matrix/conv weight ``name`` is stored as int8 ``name`` plus fp16 ``name::scale`` (one per output
channel); every other tensor (biases, norms) as fp16. The format round-trips exactly: loading a folder and
quantising the loaded weights again gives the same int8 values and scales (tested).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from zero1to3.atomic import atomic_path

#: Marks the files of this format (safetensors metadata), so a foreign file is refused with a clear error.
FORMAT = "zero1to3-int8-per-channel"
FORMAT_VERSION = "1"
WEIGHTS_STEM = "weights_int8"
SCALE_SUFFIX = "::scale"
#: Tensors smaller than this stay fp16: their bytes do not matter and their precision might.
MIN_QUANTIZED_NUMEL = 1024
#: Shards stay under the 16 MB file limit of the shipping budget.
DEFAULT_SHARD_BYTES = 15 * 10**6


class QuantizedFormatError(ValueError):
    """A folder that claims 8-bit weights but whose files are missing, foreign or inconsistent (one line)."""


def quantize_tensor(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, fp16 scale per output channel) with ``weight ~= values * scale``.

    The scale is rounded to fp16 *before* the values are computed, so the largest entry of each row maps to
    +-127 exactly and dequantised weights quantise back to the same pair.
    """
    w = weight.detach().float().reshape(weight.shape[0], -1)
    peak = w.abs().amax(dim=1)
    scale = (peak / 127.0).to(torch.float16)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero rows (or fp16 underflow)
    values = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return values.reshape(weight.shape), scale


def dequantize_tensor(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 weights; exact (an int of 7 bits times an fp16 scale fits fp32's mantissa)."""
    shape = (values.shape[0],) + (1,) * (values.dim() - 1)
    return values.float() * scale.float().reshape(shape)


def _quantizable(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() and tensor.dim() >= 2 and tensor.numel() >= MIN_QUANTIZED_NUMEL


def quantize_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors written to disk: int8 + scale for large matrices, fp16 for the rest."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if SCALE_SUFFIX in name:
            raise QuantizedFormatError(f"parameter name {name!r} contains the reserved {SCALE_SUFFIX!r}")
        if _quantizable(tensor):
            out[name], out[name + SCALE_SUFFIX] = quantize_tensor(tensor)
        elif tensor.is_floating_point():
            out[name] = tensor.detach().to(torch.float16).contiguous()
        else:
            out[name] = tensor.detach().contiguous()
    return out


def dequantize_state_dict(stored: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, tensor in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if tensor.dtype == torch.int8:
            scale = stored.get(name + SCALE_SUFFIX)
            if scale is None:
                raise QuantizedFormatError(f"int8 tensor {name!r} has no {name + SCALE_SUFFIX!r}")
            out[name] = dequantize_tensor(tensor, scale).to(dtype)
        elif tensor.is_floating_point():
            out[name] = tensor.to(dtype)
        else:
            out[name] = tensor
    return out


def _shards(stored: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive groups of whole tensors, each under ``max_bytes`` (a single larger tensor gets its own)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in stored.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += nbytes
    return groups


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The int8 weight files of a component folder, in shard order (empty when it has none)."""
    folder = Path(folder)
    single = folder / f"{WEIGHTS_STEM}.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob(f"{WEIGHTS_STEM}-*-of-*.safetensors"))


def is_quantized(folder: str | os.PathLike) -> bool:
    return bool(weight_files(folder))


def save_quantized(module: torch.nn.Module, folder: str | os.PathLike,
                   max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Path]:
    """Write a diffusers ``ModelMixin`` component as config.json + int8 safetensors shards (atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in weight_files(folder):
        old.unlink()
    stored = quantize_state_dict(module.state_dict())
    groups = _shards(stored, max_shard_bytes)
    metadata = {"format": FORMAT, "version": FORMAT_VERSION}
    paths = []
    for k, group in enumerate(groups, 1):
        name = (f"{WEIGHTS_STEM}.safetensors" if len(groups) == 1
                else f"{WEIGHTS_STEM}-{k:05d}-of-{len(groups):05d}.safetensors")
        with atomic_path(folder / name) as tmp:
            save_file(group, str(tmp), metadata=metadata)
        paths.append(folder / name)
    module.save_config(folder)
    return paths


def read_quantized(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every stored tensor of a quantised folder, checking the format marker and the shard set."""
    files = weight_files(folder)
    if not files:
        raise QuantizedFormatError(f"{folder}: no {WEIGHTS_STEM}*.safetensors files")
    if "-of-" in files[0].stem:
        expected = int(files[0].stem.rsplit("-of-", 1)[1])
        if expected != len(files):
            raise QuantizedFormatError(f"{folder}: {len(files)} of {expected} {WEIGHTS_STEM} shards present")
    stored: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise QuantizedFormatError(f"{path}: not a {FORMAT} file (metadata {json.dumps(meta)[:80]})")
                for key in f.keys():
                    stored[key] = f.get_tensor(key)
        except QuantizedFormatError:
            raise
        except Exception as exc:  # truncated or not safetensors
            raise QuantizedFormatError(f"cannot read {path} as safetensors ({str(exc).splitlines()[0][:120]})") from None
    return stored


def load_quantized(cls, folder: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """Build ``cls`` (a diffusers ModelMixin) from its config.json and load the dequantised weights strictly."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise QuantizedFormatError(f"{folder}: missing config.json beside the int8 weights")
    module = cls.from_config(cls.load_config(folder))
    state = dequantize_state_dict(read_quantized(folder), dtype)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise QuantizedFormatError(f"{folder}: weights do not match config.json ({len(missing)} missing, e.g. "
                                   f"{missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})")
    return module.to(dtype).eval()
