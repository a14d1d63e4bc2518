"""A small foreground segmenter of our own, so photos on busy backgrounds can be cut out offline.

The diffusion model was trained on objects on white; a photo whose background is neither transparent nor
plain must have its object cut out first. A compact UNet (a few hundred thousand weights, shipped in
``weights/segmenter`` as fp16 safetensors) predicts the object mask at ``input_size`` px (aspect kept);
the probabilities are upsampled to the image and their edges snapped to the image's own edges with a
guided filter, so a 160 px prediction still cuts a 1000 px photo cleanly. Training: ``segmentation_train``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from scipy import ndimage

class _EmptyFp32ListFilter(logging.Filter):
    """diffusers warns on every ``.to(dtype)`` even when no module needs float32 (``[]``); drop that case."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFp32ListFilter())

#: Where the package's own trained segmenter lives.
DEFAULT_SEGMENTER_DIR = Path(__file__).resolve().parent / "weights" / "segmenter"


class SegmenterLoadError(ValueError):
    """A segmenter folder that cannot be loaded (the message is one line)."""


def _conv_block(in_channels: int, out_channels: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), torch.nn.BatchNorm2d(out_channels),
        torch.nn.ReLU(inplace=True),
        torch.nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), torch.nn.BatchNorm2d(out_channels),
        torch.nn.ReLU(inplace=True))


class ForegroundSegmenter(ModelMixin, ConfigMixin):
    """UNet: RGB in [0, 1] [B, 3, H, W] (H, W multiples of 2**(levels-1)) -> object logits [B, 1, H, W].

    ``input_size`` is the longest side the net was trained at; :func:`segment` resizes photos to it.
    """

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 96, 128), input_size: int = 160,
                 stem_stride: int = 2) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        # a strided stem: the UNet runs at 1/stem_stride of the input (4x fewer FLOPs at 2), and the
        # guided filter at full resolution restores the edges the coarser logits lose
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, channels[0], 2 * stem_stride - 1 if stem_stride > 1 else 3, stride=stem_stride,
                            padding=stem_stride - 1 if stem_stride > 1 else 1, bias=False),
            torch.nn.BatchNorm2d(channels[0]), torch.nn.ReLU(inplace=True))
        self.encoders = torch.nn.ModuleList(
            _conv_block(channels[max(0, i - 1)], c) for i, c in enumerate(channels))
        self.decoders = torch.nn.ModuleList(
            _conv_block(channels[i + 1] + channels[i], channels[i]) for i in range(len(channels) - 1))
        self.head = torch.nn.Conv2d(channels[0], 1, 1)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the stem's stride, then one halving per level)."""
        return int(self.config.stem_stride) * 2 ** (len(self.encoders) - 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = self.stem((rgb - self.mean) * 2.0)
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = encoder(x)
            skips.append(x)
        for i in range(len(self.decoders) - 1, -1, -1):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoders[i](torch.cat([x, skips[i]], dim=1))
        logits = self.head(x)
        if logits.shape[-2:] != rgb.shape[-2:]:
            logits = F.interpolate(logits, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def save_weights(self, path: str | os.PathLike, dtype: torch.dtype = torch.float16) -> None:
        """config.json + safetensors (fp16 by default: the weights ship inside the package), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        original = next(self.parameters()).dtype
        try:
            self.to(dtype).save_pretrained(tmp, safe_serialization=True)
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the shipped folder private
            for file in tmp.iterdir():
                os.chmod(file, 0o644)
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            self.to(original)
            shutil.rmtree(tmp, ignore_errors=True)


def load_segmenter(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> ForegroundSegmenter:
    """A segmenter in float32 eval mode from a local folder (default: the package's own)."""
    folder = Path(path) if path is not None else DEFAULT_SEGMENTER_DIR
    if not (folder / "config.json").is_file():
        raise SegmenterLoadError(f"no segmenter in {folder} (expected config.json and "
                                 "diffusion_pytorch_model.safetensors from ForegroundSegmenter.save_weights)")
    try:
        model = ForegroundSegmenter.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SegmenterLoadError(f"cannot load segmenter from {folder}: {first}") from None
    return model.to(device).eval()


@lru_cache(maxsize=2)
def _cached_segmenter(path: str) -> ForegroundSegmenter:
    return load_segmenter(path)


@dataclass
class SegmenterConfig:
    #: Path of a segmenter folder; None = the package's own.
    weights: str | None = None
    #: Probability above which a pixel is object.
    threshold: float = 0.5
    #: Net input sizes tried, as multiples of the weights' ``input_size``; the prediction the net is surest of
    #: and that agrees with the others (:func:`most_confident_probability`) is kept. ``(1.0,)``: one pass.
    scales: tuple[float, ...] = (1.0, 0.8, 1.2, 1.4)
    #: Average the kept prediction with that of the mirrored image (one more pass at the kept scale).
    flip: bool = True
    #: Guided-filter radius in net-input pixels (scaled up with the image) and regulariser; radius 0 = off.
    refine_radius: int = 2
    #: Longest side at which the guided filter's coefficients are found (then upsampled to the photo).
    refine_size: int = 512
    refine_eps: float = 1e-3
    #: Width of the alpha ramp across the refined edge, in probability units (small: crisp cut-outs).
    edge_softness: float = 0.25
    #: Connected object pieces smaller than this share of the largest piece are dropped as specks.
    min_piece_fraction: float = 0.02
    #: Below this confidence :func:`segment` reports the mask as unreliable (preprocessing warns).
    min_confidence: float = 0.6
    #: A photo's object covers more of the frame than this; a smaller find is more likely texture than object
    #: (on pure noise the network reports 1-3% of the pixels with confidence up to ~0.75).
    min_area_fraction: float = 0.05
    #: CPU threads for the net (None: torch's current setting).
    threads: int | None = None


@dataclass
class Segmentation:
    alpha: np.ndarray          #: float32 [H, W] in [0, 1], edges refined
    mask: np.ndarray           #: bool [H, W]: alpha >= 0.5 with specks dropped
    confidence: float          #: in [0, 1]: how decided the net was (see :func:`mask_confidence`)


def mask_confidence(prob: np.ndarray) -> float:
    """Share of the maybe-object pixels (p > 0.2) that are surely object (p > 0.8); 0 when there is none.

    A clear object has probabilities near 0 or 1 with a thin unsure rim (about 0.9 here); a scene the net
    cannot parse leaves a large unsure area. Background certainty is not counted, so it cannot dilute it.
    """
    maybe = np.count_nonzero(prob > 0.2)
    if np.count_nonzero(prob > 0.5) < max(16, 0.002 * prob.size):
        return 0.0
    return float(np.count_nonzero(prob > 0.8) / maybe)


def network_size(height: int, width: int, input_size: int, stride: int) -> tuple[int, int]:
    """(h, w) for the net: longest side ``input_size``, aspect kept, both multiples of ``stride``."""
    scale = input_size / max(height, width)
    h = max(stride, int(round(height * scale / stride)) * stride)
    w = max(stride, int(round(width * scale / stride)) * stride)
    return h, w


def _resize(array: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] float -> ``size``, antialiased when shrinking."""
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    shrink = size[0] < array.shape[-2] or size[1] < array.shape[-1]
    return F.interpolate(array, size=size, mode="bilinear", antialias=shrink, align_corners=False)


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks (1 when both are empty)."""
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else float(np.count_nonzero(predicted & truth) / union)


@torch.no_grad()
def predict_probability(model: ForegroundSegmenter, rgb: np.ndarray, size: tuple[int, int] | None = None,
                        input_size: int | None = None) -> np.ndarray:
    """Object probability float32 at ``size`` (default: the image's), upsampling the net's logits.

    ``input_size``: the net's input's longest side (default: the weights' own). Mirror averaging:
    :func:`most_confident_probability` (``flip``).
    """
    height, width = rgb.shape[:2]
    device = next(model.parameters()).device
    x = torch.from_numpy(np.array(rgb[..., :3], dtype=np.uint8, copy=True)).to(device).permute(2, 0, 1)[None]
    h, w = network_size(height, width, int(input_size or model.config.input_size), model.stride)
    logits = model(_resize(x.float() / 255.0, (h, w)))
    return torch.sigmoid(_resize(logits, size or (height, width)))[0, 0].float().cpu().numpy()


def most_confident_probability(model: ForegroundSegmenter, rgb: np.ndarray, scales: tuple[float, ...] = (1.0,),
                               flip: bool = False, threshold: float = 0.5) -> tuple[np.ndarray, float]:
    """(probability at the image's size, its :func:`mask_confidence`) at the scale the net is surest of.

    The net sees the image at each ``input_size * scale`` (rounded to its stride; repeated sizes run once);
    an object it cannot parse at one scale (a salient background patch mistaken for it, a thin or dull
    object missed) is often clear at another, and the unsure attempts have the lower confidence. Confidence
    alone is fooled by a *confidently wrong* attempt (on fine-grained backgrounds an enlarged input turns
    grain into sure object blobs), so each scale is scored by its confidence times its mask's IoU with the
    consensus mask (the mean probability of all scales, at ``threshold``); ties keep the earlier scale. With
    ``flip``, the kept scale's probability is averaged with its mirror image's (reported confidence: of that).
    """
    height, width = rgb.shape[:2]
    tried: dict[tuple[int, int], tuple[np.ndarray, float, int]] = {}
    for scale in scales or (1.0,):
        input_size = max(model.stride, int(round(float(model.config.input_size) * scale)))
        key = network_size(height, width, input_size, model.stride)
        if key not in tried:
            prob = predict_probability(model, rgb, input_size=input_size)
            tried[key] = (prob, mask_confidence(prob), input_size)
    attempts = list(tried.values())
    best = attempts[0]
    if len(attempts) > 1:
        consensus = np.mean([prob for prob, _, _ in attempts], axis=0) > threshold
        scores = [confidence * mask_iou(prob > threshold, consensus) for prob, confidence, _ in attempts]
        best = attempts[int(np.argmax(scores))]
    prob, confidence, input_size = best
    if flip:  # mirrored at the image's own size: a mirror-symmetric image gives an exactly symmetric result
        mirrored = predict_probability(model, np.ascontiguousarray(rgb[:, ::-1]), input_size=input_size)[:, ::-1]
        prob = 0.5 * (prob + mirrored)
        confidence = mask_confidence(prob)
    return np.ascontiguousarray(prob, dtype=np.float32), confidence


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
                  full_guide: np.ndarray | None = None) -> np.ndarray:
    """He et al.'s grey-guide guided filter (box means via scipy): edges of ``src`` follow ``guide``'s.

    With ``full_guide`` (a larger copy of ``guide``), the linear coefficients found at the small size
    are upsampled and applied to it (the "fast guided filter"), so a 12 MP photo costs what 0.3 MP does.
    """
    size = 2 * radius + 1
    mean = lambda a: ndimage.uniform_filter(a, size=size, mode="reflect")  # noqa: E731
    mean_i, mean_p = mean(guide), mean(src)
    cov_ip = mean(guide * src) - mean_i * mean_p
    var_i = mean(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = mean(a), mean(b)
    if full_guide is None or full_guide.shape == guide.shape:
        return mean_a * (guide if full_guide is None else full_guide) + mean_b
    coefficients = torch.from_numpy(np.stack([mean_a, mean_b]).astype(np.float32))[None]
    a_full, b_full = _resize(coefficients, full_guide.shape)[0].numpy()
    return a_full * full_guide + b_full


def _specks(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """The connected pieces of ``mask`` smaller than ``min_fraction`` of its largest piece."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return np.zeros_like(mask)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    small = np.flatnonzero(sizes < min_fraction * sizes.max()) + 1
    return np.isin(labels, small)


def segment(image: np.ndarray, config: SegmenterConfig = SegmenterConfig(),
            model: ForegroundSegmenter | None = None) -> Segmentation:
    """RGB uint8 [H, W, 3] -> the object's alpha, mask and the net's confidence."""
    if model is None:
        model = _cached_segmenter(str(Path(config.weights) if config.weights else DEFAULT_SEGMENTER_DIR))
    height, width = image.shape[:2]
    work_scale = min(max(height, width), config.refine_size) / max(height, width)
    work = (max(1, round(height * work_scale)), max(1, round(width * work_scale)))
    photo = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    small = np.asarray(photo.resize(work[::-1], Image.Resampling.BILINEAR, reducing_gap=2.0)) if work_scale < 1 else image
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        prob, confidence = most_confident_probability(model, small, tuple(config.scales), config.flip,
                                                         config.threshold)
    finally:
        torch.set_num_threads(threads)
    grey = np.asarray(photo.convert("L"), dtype=np.float32) / 255.0
    if config.refine_radius > 0:
        radius = max(1, int(round(config.refine_radius * max(work) / float(model.config.input_size))))
        guide = grey if work_scale == 1 else np.asarray(Image.fromarray(small).convert("L"), dtype=np.float32) / 255.0
        alpha = guided_filter(guide, prob, radius, config.refine_eps, full_guide=grey)
        work_alpha = guided_filter(guide, prob, radius, config.refine_eps) if work_scale < 1 else alpha
    else:
        alpha = _resize(torch.from_numpy(prob)[None, None], (height, width))[0, 0].numpy()
        work_alpha = prob if work_scale < 1 else alpha
    # specks are found at the working size (cheap), then cleared at full size
    specks = _specks(work_alpha >= config.threshold, config.min_piece_fraction)
    if specks.any():
        specks = ndimage.binary_dilation(specks, iterations=1)
        if work_scale < 1:
            specks = np.asarray(Image.fromarray(specks).resize((width, height), Image.Resampling.NEAREST))
        alpha = np.where(specks, 0.0, alpha)
    # a steep ramp around the threshold: a crisp edge without a half-transparent halo of background
    alpha = np.clip((alpha - config.threshold) / max(config.edge_softness, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)
    return Segmentation(alpha=alpha, mask=alpha >= 0.5, confidence=confidence)
