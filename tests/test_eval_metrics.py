"""Metrics and intervals of the evaluation against values known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zero1to3.evaluation.metrics import (FID_WEIGHTS_ENV, LPIPS_WEIGHTS_ENV, PSNR_CAP_DB, ImageMetrics,
                                         MetricUnavailable, build_fid, build_lpips, mask_iou, masked_psnr,
                                         non_white, psnr, ssim, to_tensor)
from zero1to3.evaluation.nvs import side_check
from zero1to3.evaluation.stats import summarize


def _images(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def test_identical_images_give_capped_psnr_and_unit_ssim() -> None:
    x = _images()
    assert torch.allclose(psnr(x, x), torch.full((4,), PSNR_CAP_DB))
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-5)


def test_psnr_of_gaussian_noise_matches_sigma() -> None:
    sigma = 0.05
    g = torch.Generator().manual_seed(1)
    clean = torch.full((4, 3, 64, 64), 0.5)
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)  # 0.5 +- 10 sigma never clips
    expected = 10.0 * math.log10(1.0 / sigma**2)
    assert torch.allclose(psnr(noisy, clean), torch.full((4,), expected), atol=0.15)
    assert float(ssim(noisy, clean).max()) < 0.99


def test_to_tensor_from_uint8() -> None:
    arr = np.zeros((2, 5, 6, 3), np.uint8)
    arr[..., 0] = 255
    t = to_tensor(arr)
    assert t.shape == (2, 3, 5, 6) and float(t[:, 0].min()) == 1.0 and float(t[:, 1:].max()) == 0.0


def test_t_interval_known_value() -> None:
    s = summarize([1, 2, 3, 4, 5], method="t")
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} * sd / sqrt(n)
    assert s.mean == 3 and s.n == 5
    assert s.low == pytest.approx(3 - half) and s.high == pytest.approx(3 + half)


def test_paired_differences_against_hand_computed_values(tmp_path) -> None:
    """first method - each other one, object by object: mean 4/3, t(0.975, 2) * sd / sqrt(3) = 1.4342."""
    from zero1to3.evaluation.results import EvalResult

    objects = [{"object": f"o{i}", "scores": {"model": {"psnr": a}, "copy": {"psnr": b}}}
               for i, (a, b) in enumerate([(10.0, 9.0), (12.0, 10.0), (14.0, 13.0)])]
    objects.append({"object": "o3", "scores": {"model": {"psnr": 30.0}}})  # no baseline score: not paired
    result = EvalResult(kind="nvs", config={}, methods=["model", "copy"], metrics=["psnr"], objects=objects)
    result.compute_summary()
    diff = result.paired["copy"]["psnr"]
    assert diff.n == 3 and diff.mean == pytest.approx(4 / 3)
    assert (diff.low, diff.high) == pytest.approx((4 / 3 - 1.43425, 4 / 3 + 1.43425), abs=1e-4)
    # the unpaired intervals overlap although every object is better: what pairing is for
    assert result.summary["model"]["psnr"].low < result.summary["copy"]["psnr"].high
    table = result.markdown()
    assert "| model − copy (paired) | 1.3333 [-0.1009, 2.7676] | 3 |" in table
    result.write(tmp_path)
    import json

    assert json.loads((tmp_path / "summary.json").read_text())["paired"]["model - copy"]["psnr"]["n"] == 3


def test_bootstrap_interval_is_reproducible_and_brackets_mean() -> None:
    values = np.random.default_rng(0).normal(20, 2, size=40).tolist()
    a, b = summarize(values, "bootstrap", seed=3), summarize(values, "bootstrap", seed=3)
    assert a == b and a.low < a.mean < a.high
    t = summarize(values, "t")
    assert abs((a.high - a.low) - (t.high - t.low)) < 0.5 * (t.high - t.low)


def test_single_value_has_no_interval_and_nan_dropped() -> None:
    s = summarize([2.0, float("nan")])
    assert s.mean == 2.0 and s.low is None and s.high is None and s.n == 1


def test_lpips_and_fid_skip_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LPIPS_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    m = ImageMetrics()
    assert m.per_image_names == ["psnr", "ssim", "mask_iou", "masked_psnr"] and not m.has_fid
    assert len(m.notices) == 2 and all("\n" not in n and "skipped" in n for n in m.notices)
    monkeypatch.setenv(FID_WEIGHTS_ENV, "/nonexistent/inception.pth")
    with pytest.raises(MetricUnavailable, match="not found"):
        build_fid()
    with pytest.raises(MetricUnavailable):
        build_lpips("/nonexistent/alexnet.pth")


class _PoolFeatures(torch.nn.Module):
    """A tiny deterministic feature extractor (2x2 average colour) standing in for Inception."""

    num_features = 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 2).flatten(1)


def test_fid_through_torchmetrics_with_custom_features() -> None:
    m = ImageMetrics(use_lpips=False, fid_feature=_PoolFeatures())
    real = [_images(16, seed=s) for s in range(3)]
    assert m.fid(iter(real), iter(real)) == pytest.approx(0.0, abs=1e-3)
    shifted = [(x * 0.5) for x in real]
    assert m.fid(iter(real), iter(shifted)) > 0.01


def _torchvision_ok() -> bool:
    try:
        import torchvision.models  # noqa: F401
    except Exception:  # a torchvision built for another torch raises RuntimeError
        return False
    return True


@pytest.mark.skipif(not _torchvision_ok(), reason="LPIPS backbone needs a working torchvision (not installed)")
def test_lpips_loads_backbone_from_local_file(tmp_path) -> None:
    import torchvision

    weights = tmp_path / "my_alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)  # random backbone: plumbing only
    lpips = build_lpips(weights)
    x = _images(2, size=64)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
    assert float(lpips(x, 1 - x).min()) > 0


def _tiny(rows: list[list[tuple[int, int, int]]]) -> np.ndarray:
    return np.asarray(rows, np.uint8)


def test_non_white_threshold_on_distance_from_white() -> None:
    # darkest channel 229 -> distance 26/255 = 0.102 > 0.1: foreground; 230 -> 0.098: background
    img = _tiny([[(255, 255, 255), (255, 255, 229), (230, 240, 250), (0, 0, 0)]])
    assert non_white(to_tensor(img)).tolist() == [[[False, True, False, True]]]
    assert non_white(to_tensor(img), threshold=0.0).tolist() == [[[False, True, True, True]]]


def test_mask_iou_hand_computed() -> None:
    pred = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]],
                         [[0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    target = torch.tensor([[[1, 0, 0, 0], [1, 1, 1, 0]], [[1, 1, 0, 0], [0, 0, 0, 0]],
                           [[0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    iou = mask_iou(pred, target)
    assert iou[0].item() == pytest.approx(2 / 5)  # intersection {(0,0),(1,0)}, union 5 pixels
    assert iou[1].item() == 0.0                   # blank prediction
    assert math.isnan(iou[2].item())              # both empty: undefined


def test_masked_psnr_hand_computed() -> None:
    # 1x4 image, mask on two pixels: errors there 0.1 (all channels) and 0.3 (one channel); outside, big errors
    target = torch.full((1, 3, 1, 4), 0.5)
    pred = target.clone()
    pred[0, :, 0, 0] += 0.1
    pred[0, 0, 0, 1] += 0.3
    pred[0, :, 0, 3] = 1.0  # outside the mask: ignored
    mask = torch.tensor([[[True, True, False, False]]])
    mse = (3 * 0.1**2 + 0.3**2) / 6  # over 2 pixels x 3 channels
    assert masked_psnr(pred, target, mask).item() == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    assert masked_psnr(target, target, mask).item() == PSNR_CAP_DB
    assert math.isnan(masked_psnr(pred, target, torch.zeros_like(mask)).item())
    # a full mask gives the ordinary PSNR
    assert masked_psnr(pred, target, torch.ones_like(mask)).item() == pytest.approx(psnr(pred, target).item(), abs=1e-4)


def _block(x: int, size: int = 12) -> np.ndarray:
    """White ``size``^2 image with a black 3x3 block at rows 0-2, columns x..x+2."""
    img = np.full((size, size, 3), 255, np.uint8)
    img[0:3, x:x + 3] = 0
    return img


def test_image_metrics_mask_scores_blank_copy_and_shift() -> None:
    """Target: a black 3x3 block (alpha 1) on white, 12x12 (SSIM's window needs >= 11 px)."""
    target = to_tensor(_block(0))
    target_mask = torch.zeros(1, 12, 12, dtype=torch.bool)
    target_mask[0, 0:3, 0:3] = True
    m = ImageMetrics(use_lpips=False, use_fid=False)
    assert m.per_image_names == ["psnr", "ssim", "mask_iou", "masked_psnr"]
    blank = m.per_image(torch.ones_like(target), target, target_mask)
    assert blank["mask_iou"] == [0.0]
    assert blank["masked_psnr"][0] == pytest.approx(0.0, abs=1e-6)  # error 1 on every masked pixel
    assert blank["psnr"][0] == pytest.approx(10 * math.log10(144 / 9), abs=1e-4)  # the background pads it
    copy = m.per_image(target, target, target_mask)
    assert copy["mask_iou"] == [1.0] and copy["masked_psnr"] == [PSNR_CAP_DB]
    # one pixel to the right: intersection 6, union 12; errors of 1 on the 6 pixels of the symmetric difference
    moved = m.per_image(to_tensor(_block(1)), target, target_mask)
    assert moved["mask_iou"][0] == pytest.approx(0.5)
    assert moved["masked_psnr"][0] == pytest.approx(10 * math.log10(2), abs=1e-4)
    far = m.per_image(to_tensor(_block(6)), target)  # no alpha given: the target's own non-white pixels
    assert far["mask_iou"] == [0.0] and far["masked_psnr"][0] == pytest.approx(0.0, abs=1e-6)
    assert ImageMetrics(use_lpips=False, use_fid=False, mask_metrics=False).per_image_names == ["psnr", "ssim"]
    with pytest.raises(ValueError, match="white_threshold"):
        ImageMetrics(use_lpips=False, use_fid=False, white_threshold=1.0)


def test_side_check_hand_computed() -> None:
    plus = np.zeros((2, 2, 3), np.uint8)          # ground truth at +90: black
    minus = np.full((2, 2, 3), 200, np.uint8)     # at -90: light grey
    good = np.stack([np.stack([plus, plus + 10]), np.stack([minus, minus - 10])])  # [2 sides, 2 samples]
    res = side_check(good, plus, minus)
    assert res["pass"] and res["psnr_plus_own"] == pytest.approx((PSNR_CAP_DB + 20 * math.log10(255 / 10)) / 2)
    assert not side_check(good[::-1], plus, minus)["pass"]          # sides swapped
    same = np.stack([good[0], good[0]])  # one image for both sides (a copy, a blank): +90 right, -90 wrong
    assert not side_check(same, plus, minus)["pass"]
