"""Metrics and intervals of the evaluation against values known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zero1to3.evaluation.metrics import (FID_WEIGHTS_ENV, LPIPS_WEIGHTS_ENV, PSNR_CAP_DB, ImageMetrics,
                                         MetricUnavailable, build_fid, build_lpips, psnr, ssim, to_tensor)
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
    assert m.per_image_names == ["psnr", "ssim"] and not m.has_fid
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
