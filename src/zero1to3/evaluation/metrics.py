"""Image metrics for novel-view evaluation: PSNR, SSIM, LPIPS, FID (torchmetrics), and foreground-mask metrics.

Why a wrapper at all: the metrics must run offline. LPIPS needs an ImageNet backbone and FID an Inception
network, neither of which can be downloaded here, so both take their weights from a local file (argument or
environment variable) and are *skipped with a one-line notice* when the file or the optional package is
missing -- a number is never invented.

PSNR and SSIM over the whole frame are dominated by the white background: a blank white image or a grey blob
scores well against a small object. The foreground measures tell drawn objects from blobs: **mask IoU**
(the target's alpha vs the prediction's non-white pixels) and **masked PSNR** (PSNR over the union of the
two masks only), see :func:`mask_iou` and :func:`masked_psnr`.

Images everywhere in this module are float tensors [N, 3, H, W] in [0, 1] (or uint8 arrays [N, H, W, 3],
converted by :func:`to_tensor`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

#: Environment variable naming the LPIPS backbone weights (torchvision ImageNet state dict, e.g. AlexNet's).
LPIPS_WEIGHTS_ENV = "ZERO1TO3_LPIPS_WEIGHTS"
#: Environment variable naming the FID Inception weights (torch-fidelity's ``pt_inception-2015-12-05`` file).
FID_WEIGHTS_ENV = "ZERO1TO3_FID_WEIGHTS"
#: PSNR of identical images is infinite; per-image values are capped here so means and intervals stay finite.
#: (Two uint8 images that differ by one level in one pixel of 256x256x3 score ~101 dB.)
PSNR_CAP_DB = 100.0

#: Target foreground: alpha (in [0, 1], after resizing to the evaluation size) at or above this value. 0.25
#: rather than 0.5 so that the anti-aliased rim a perfect prediction draws (visibly non-white) counts as
#: object: the ground truth as its own prediction then scores mask IoU ~0.97 at 64 px and 1.0 at 256 px on
#: procedural renders (0.92 / 0.99 with 0.5); docs/evaluation.md.
ALPHA_THRESHOLD = 0.25
#: Prediction foreground: pixels whose distance from white, max over channels of (1 - value) in [0, 1], exceeds
#: this (0.1 = 25.5 levels of 255 in the darkest channel). Sampler noise on a white background stays well
#: below it; pastel and light-grey object pixels (darkest channel >= 230) count as background.
WHITE_DISTANCE_THRESHOLD = 0.1

_TORCHVISION_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (missing weights or optional package); the message says why in one line."""


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] (or [H, W, 3]) array -> float [N, 3, H, W] in [0, 1]; float tensors pass through."""
    if isinstance(images, torch.Tensor):
        return images.float()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. np.asarray of a PIL image; torch warns about read-only arrays
        arr = arr.copy()
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def psnr(pred: torch.Tensor, target: torch.Tensor, cap: float = PSNR_CAP_DB) -> torch.Tensor:
    """Per-image PSNR in dB (data range 1), capped at ``cap`` so identical images do not give inf."""

    values = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return torch.clamp(torch.nan_to_num(values, posinf=cap), max=cap)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5, data range 1: the standard settings)."""

    return structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")


def non_white(images: torch.Tensor, threshold: float = WHITE_DISTANCE_THRESHOLD) -> torch.Tensor:
    """Foreground of images on white: bool [N, H, W], True where max over channels of (1 - value) > ``threshold``."""
    return (1.0 - images).amax(dim=1) > threshold


def mask_iou(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Per-image intersection over union of bool masks [N, H, W]; NaN where both masks are empty (undefined)."""
    inter = (pred_mask & target_mask).flatten(1).sum(1).double()
    union = (pred_mask | target_mask).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan"))).float()


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cap: float = PSNR_CAP_DB) -> torch.Tensor:
    """Per-image PSNR (dB, data range 1) over the pixels where ``mask`` [N, H, W] is True, all channels.

    The mean squared error is taken over the masked pixels only, so the white background cannot pad the
    score. Capped at ``cap`` like :func:`psnr`; NaN for an empty mask.
    """
    sq = ((pred.double() - target.double()) ** 2).sum(dim=1)  # [N, H, W], summed over channels
    m = mask.double()
    count = m.flatten(1).sum(1) * pred.shape[1]
    mse = (sq * m).flatten(1).sum(1) / count.clamp(min=1)
    values = torch.clamp(10.0 * torch.log10(1.0 / mse), max=cap)  # mse 0 -> inf -> cap
    return torch.where(count > 0, values, torch.full_like(values, float("nan"))).float()


def _torchvision_weights_filename(net: str) -> str:
    """File name torchvision's loader looks for in the torch hub cache for the LPIPS backbone ``net``."""
    try:
        import torchvision.models as tvm  # lazy: optional extra (LPIPS backbone)
    except Exception as exc:  # a broken torchvision raises RuntimeError, not ImportError
        raise MetricUnavailable(f"LPIPS needs torchvision ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    weights = getattr(tvm, _TORCHVISION_WEIGHTS[net]).DEFAULT
    return os.path.basename(weights.url)


@contextlib.contextmanager
def _hub_with(weights_file: Path, expected_name: str) -> Iterator[None]:
    """Temporarily point the torch hub cache at a folder holding ``weights_file`` under the expected name.

    torchvision then loads the local file instead of downloading; the hub setting is restored afterwards.
    """
    old = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="zero1to3-hub-") as tmp:
        ckpt_dir = Path(tmp) / "checkpoints"
        ckpt_dir.mkdir()
        link = ckpt_dir / expected_name
        try:
            link.symlink_to(weights_file.resolve())
        except OSError:
            shutil.copyfile(weights_file, link)
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(old)


def _resolve_weights(path: str | os.PathLike[str] | None, env: str, what: str) -> Path:
    value = path if path is not None else os.environ.get(env)
    if not value:
        raise MetricUnavailable(f"{what} skipped: no weights given (set {env} or pass the weights path)")
    p = Path(value).expanduser()
    if not p.exists():
        raise MetricUnavailable(f"{what} skipped: weights not found at {p}")
    return p


def build_lpips(weights: str | os.PathLike[str] | None = None, net: str = "alex",
                device: str | torch.device = "cpu") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """torchmetrics LPIPS with the backbone loaded from a local file; returns per-image distances.

    ``weights`` (or $ZERO1TO3_LPIPS_WEIGHTS) is the torchvision ImageNet state dict of the backbone
    (``alexnet-owt-7be5be79.pth`` for ``net="alex"``), or a folder containing it (directly or under
    ``checkpoints/``). The LPIPS linear heads ship inside torchmetrics. Raises :class:`MetricUnavailable`.
    """
    if net not in _TORCHVISION_WEIGHTS:
        raise ValueError(f"LPIPS net must be one of {sorted(_TORCHVISION_WEIGHTS)}, got {net!r}")
    path = _resolve_weights(weights, LPIPS_WEIGHTS_ENV, "LPIPS")
    expected = _torchvision_weights_filename(net)
    if path.is_dir():
        candidates = [path / expected, path / "checkpoints" / expected]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise MetricUnavailable(f"LPIPS skipped: {path} holds no {expected}")
        path = found[0]
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # lazy: optional extra
    except Exception as exc:
        raise MetricUnavailable(f"LPIPS skipped: torchmetrics LPIPS unavailable ({exc})".splitlines()[0]) from None
    with _hub_with(path, expected):
        metric = LearnedPerceptualImagePatchSimilarity(net_type=net, reduction="none", normalize=True)
    metric = metric.to(device).eval()

    def lpips(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = metric(pred.to(device).clamp(0, 1), target.to(device).clamp(0, 1))
        metric.reset()
        return out.reshape(-1).cpu()

    return lpips


def build_fid(weights: str | os.PathLike[str] | None = None, feature: int | torch.nn.Module = 2048,
              device: str | torch.device = "cpu"):
    """torchmetrics FrechetInceptionDistance with the Inception weights read from a local file.

    ``weights`` (or $ZERO1TO3_FID_WEIGHTS) is torch-fidelity's Inception file
    (``weights-inception-2015-12-05-6726825d.pth``). ``feature`` may also be an ``nn.Module`` mapping float
    images in [0, 1] to [N, D] features (a custom extractor; then no weights are needed). Raises
    :class:`MetricUnavailable`.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance  # lazy: optional extra (torch-fidelity)

    if isinstance(feature, torch.nn.Module):
        return FrechetInceptionDistance(feature=feature, normalize=True).to(device)
    path = _resolve_weights(weights, FID_WEIGHTS_ENV, "FID")
    try:
        metric = FrechetInceptionDistance(feature=feature, normalize=True, feature_extractor_weights_path=str(path))
    except Exception as exc:  # torch-fidelity missing or broken
        raise MetricUnavailable(f"FID skipped: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    return metric.to(device)


@dataclass
class ImageMetrics:
    """The metric set of one evaluation run: per-image PSNR/SSIM(/LPIPS), the foreground-mask metrics, and
    FID over the whole set.

    Metrics that cannot run are listed in :attr:`notices` (one line each) and left out of the results.
    ``mask_metrics``: also mask IoU and masked PSNR (target mask from the ground truth's alpha, prediction
    mask = pixels farther than ``white_threshold`` from white).
    """

    lpips_weights: str | None = None
    fid_weights: str | None = None
    lpips_net: str = "alex"
    fid_feature: int | torch.nn.Module = 2048
    use_lpips: bool = True
    use_fid: bool = True
    mask_metrics: bool = True
    white_threshold: float = WHITE_DISTANCE_THRESHOLD
    device: str = "cpu"
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.white_threshold < 1.0:
            raise ValueError(f"white_threshold must be in [0, 1), got {self.white_threshold}")
        self._lpips = None
        self._fid_ok = False
        if self.use_lpips:
            try:
                self._lpips = build_lpips(self.lpips_weights, self.lpips_net, self.device)
            except MetricUnavailable as exc:
                self.notices.append(str(exc))
        if self.use_fid:
            try:
                build_fid(self.fid_weights, self.fid_feature, self.device)
                self._fid_ok = True
            except MetricUnavailable as exc:
                self.notices.append(str(exc))

    @property
    def per_image_names(self) -> list[str]:
        """Names of the per-image metrics this run computes, in table order."""
        return (["psnr", "ssim"] + (["lpips"] if self._lpips is not None else [])
                + (["mask_iou", "masked_psnr"] if self.mask_metrics else []))

    @property
    def has_fid(self) -> bool:
        return self._fid_ok

    def per_image(self, pred: torch.Tensor, target: torch.Tensor,
                  target_mask: torch.Tensor | None = None) -> dict[str, list[float]]:
        """Per-image scores of ``pred`` against ``target`` (both [N, 3, H, W] in [0, 1]).

        ``target_mask`` (bool [N, H, W]) is the target's foreground (thresholded alpha); without it the
        target's own non-white pixels stand in. Undefined mask scores (both masks empty) are NaN.
        """
        out = {"psnr": psnr(pred, target).tolist(), "ssim": ssim(pred, target).tolist()}
        if self._lpips is not None:
            out["lpips"] = self._lpips(pred, target).tolist()
        if self.mask_metrics:
            if target_mask is None:
                target_mask = non_white(target, self.white_threshold)
            pred_mask = non_white(pred, self.white_threshold)
            out["mask_iou"] = mask_iou(pred_mask, target_mask).tolist()
            out["masked_psnr"] = masked_psnr(pred, target, pred_mask | target_mask).tolist()
        return out

    def fid(self, real: Iterator[torch.Tensor], fake: Iterator[torch.Tensor]) -> float | None:
        """FID between two streams of image batches; None (with a notice) if unavailable or too few images."""
        if not self._fid_ok:
            return None
        metric = build_fid(self.fid_weights, self.fid_feature, self.device)
        for batch in real:
            metric.update(batch.to(self.device), real=True)
        for batch in fake:
            metric.update(batch.to(self.device), real=False)
        try:
            return float(metric.compute())
        except RuntimeError as exc:
            self.notices.append(f"FID skipped: {exc}".splitlines()[0])
            return None
