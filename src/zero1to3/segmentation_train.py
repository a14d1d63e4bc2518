"""Training and held-out evaluation of the foreground segmenter (``zero1to3.segmentation``).

Examples are made on the fly, on the training device: an object render (RGBA, from a renders folder or
compact shards) is scaled, shifted and flipped onto a background that is either a crop of a real texture
or photo (any folder of images) or a procedural pattern (gradient, noise, stripes, checker, plain), with
a soft cast shadow, colour jitter, sensor noise, blur and JPEG artefacts. The evaluation composites
test-split renders over backgrounds from folders that training never read, and scores the shipped
inference path (:func:`zero1to3.segmentation.segment`) by mask IoU.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zero1to3.segmentation import ForegroundSegmenter, SegmenterConfig, mask_iou, segment

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tga", ".tif", ".tiff", ".dds")


@dataclass
class SegmenterTrainConfig:
    steps: int = 4000
    batch_size: int = 48
    #: Training canvas side; also the net's ``input_size`` at inference.
    image_size: int = 160
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    #: Stop (with the learning-rate schedule finished) after this many seconds, whichever comes first.
    time_limit_s: float | None = None
    views_per_object: int = 4
    max_objects: int | None = None
    #: Share of backgrounds cut from real images (the rest procedural) when image folders are given.
    image_background_share: float = 0.6
    jpeg_share: float = 0.3
    shadow_share: float = 0.5
    #: Share of examples with no object at all (so the net learns to say "nothing here").
    empty_share: float = 0.03
    seed: int = 0
    log_every: int = 100


# ---------------------------------------------------------------------------------------------- data
@dataclass
class ObjectBank:
    """Object views as premultiplied colour and alpha, uint8 [M, 3|1, S, S] (premultiplied resamples right)."""

    premultiplied: torch.Tensor
    alpha: torch.Tensor

    def __len__(self) -> int:
        return int(self.alpha.shape[0])

    def to(self, device: torch.device | str) -> "ObjectBank":
        return ObjectBank(self.premultiplied.to(device), self.alpha.to(device))


def _view_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9][0-9].png"))


def is_renders_folder(path: str | os.PathLike) -> bool:
    """True for the released render layout (object folders of NNN.png), False for shards."""
    from zero1to3.data.shards import is_shard_folder

    path = Path(path)
    return path.is_dir() and not is_shard_folder(path)


def _pick_views(count: int, wanted: int) -> list[int]:
    if count <= wanted:
        return list(range(count))
    return sorted({int(round(i * count / wanted)) % count for i in range(wanted)})


def _premultiply(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    premultiplied = np.round(rgba[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    return premultiplied, rgba[..., 3]


def load_object_bank(path: str | os.PathLike, size: int, views_per_object: int = 4,
                     max_objects: int | None = None) -> ObjectBank:
    """Object views from a renders folder (RGBA PNGs) or a shards folder (``zero1to3.data.shards``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"object data not found: {path} (expected a renders folder or shards)")
    premultiplied, alphas = [], []
    if is_renders_folder(path):
        folders = sorted(p for p in path.iterdir() if p.is_dir() and _view_files(p))[:max_objects]
        for folder in folders:
            files = _view_files(folder)
            for index in _pick_views(len(files), views_per_object):
                try:
                    with Image.open(files[index]) as image:
                        rgba = image.convert("RGBA")
                        if rgba.size != (size, size):
                            rgba = rgba.resize((size, size), Image.Resampling.BICUBIC)  # PIL premultiplies RGBA
                        array = np.asarray(rgba)
                except OSError as exc:
                    logger.warning("skipping unreadable view %s: %s", files[index], exc)
                    continue
                p, a = _premultiply(array)
                premultiplied.append(p)
                alphas.append(a)
        if not alphas:
            raise ValueError(f"no readable object views in {path}")
        pm = torch.from_numpy(np.stack(premultiplied)).permute(0, 3, 1, 2).contiguous()
        al = torch.from_numpy(np.stack(alphas))[:, None].contiguous()
        return ObjectBank(pm, al)
    from zero1to3.data.shards import read_shards

    views = read_shards(path)
    images = np.asarray(views.images)[:max_objects]
    alpha = np.asarray(views.alpha)[:max_objects]
    n, v = images.shape[:2]
    chosen = _pick_views(v, views_per_object)
    images = images[:, chosen].reshape(-1, *images.shape[2:])
    alpha = alpha[:, chosen].reshape(-1, *alpha.shape[2:])
    # composited on white: image = colour*a + 255*(1-a), so colour*a = image - 255*(1-a)
    a = alpha.astype(np.float32)[..., None] / 255.0
    pm = np.clip(np.round(images.astype(np.float32) - 255.0 * (1.0 - a)), 0, 255).astype(np.uint8)
    pm_t = torch.from_numpy(pm).permute(0, 3, 1, 2).contiguous()
    al_t = torch.from_numpy(alpha)[:, None].contiguous()
    if pm_t.shape[-1] != size:
        pm_t = F.interpolate(pm_t.float(), size=(size, size), mode="bilinear", antialias=True).round().clamp(0, 255).byte()
        al_t = F.interpolate(al_t.float(), size=(size, size), mode="bilinear", antialias=True).round().clamp(0, 255).byte()
    return ObjectBank(pm_t, al_t)


def list_images(roots: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file() and root.suffix.lower() in IMAGE_SUFFIXES:
            files.append(root)
        elif root.is_dir():
            files.extend(sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
    return files


def _random_crop(image: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """A square crop (a random share of the shorter side, small textures tiled first) resized to ``size``."""
    w, h = image.size
    if min(w, h) < size // 2:  # small tileable texture: tile it up to a useful size
        reps_x, reps_y = math.ceil(size / w) + 1, math.ceil(size / h) + 1
        image = Image.fromarray(np.tile(np.asarray(image), (reps_y, reps_x, 1)))
        w, h = image.size
    side = int(min(w, h) * rng.uniform(0.35, 1.0))
    side = max(8, side)
    x0 = int(rng.integers(0, w - side + 1))
    y0 = int(rng.integers(0, h - side + 1))
    crop = image.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(crop)


def load_background_bank(roots: Iterable[str | os.PathLike], size: int, crops_per_image: int = 2,
                         max_images: int | None = 1500, seed: int = 0) -> torch.Tensor:
    """uint8 [K, 3, S, S] crops of the images under ``roots`` (any size; alpha dropped; tiny ones skipped)."""
    rng = np.random.default_rng(seed)
    files = list_images(roots)
    if max_images is not None and len(files) > max_images:
        files = [files[i] for i in sorted(rng.choice(len(files), max_images, replace=False))]
    crops = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale, much faster
                rgb = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            logger.debug("skipping background %s: %s", file, exc)
            continue
        if min(rgb.size) < 16 or np.asarray(rgb).std() < 2.0:  # icons, blank images
            continue
        if max(rgb.size) > 4 * size:
            rgb.thumbnail((4 * size, 4 * size))
        for _ in range(crops_per_image):
            crops.append(_random_crop(rgb, size, rng))
    if not crops:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return x
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


def procedural_backgrounds(n: int, size: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """float [n, 3, S, S] in [0, 1]: gradients, multi-scale noise, stripes, checkers and plain colours."""
    c1 = torch.rand(n, 3, 1, 1, generator=gen, device=device)
    c2 = torch.rand(n, 3, 1, 1, generator=gen, device=device)
    lin = torch.linspace(-1, 1, size, device=device)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    angle = _uniform(n, 0, math.pi, gen, device).view(n, 1, 1)
    u = torch.cos(angle) * xx + torch.sin(angle) * yy
    v = -torch.sin(angle) * xx + torch.cos(angle) * yy
    freq = _uniform(n, 1.5, 14.0, gen, device).view(n, 1, 1)
    phase = _uniform(n, 0, 2 * math.pi, gen, device).view(n, 1, 1)
    gradient = (u + 1) / 2
    stripes = 0.5 + 0.5 * torch.sin(math.pi * freq * u + phase)
    hard = torch.rand(n, 1, 1, generator=gen, device=device) < 0.5
    stripes = torch.where(hard, (stripes > 0.5).float(), stripes)
    checker = ((torch.sin(math.pi * freq * u + phase) * torch.sin(math.pi * freq * v)) > 0).float()
    noise = torch.zeros(n, 1, size, size, device=device)
    for octave in range(2, 7):
        cells = 2 ** octave
        weight = torch.rand(n, 1, 1, 1, generator=gen, device=device)
        layer = torch.randn(n, 1, cells, cells, generator=gen, device=device)
        noise = noise + weight * F.interpolate(layer, size=(size, size), mode="bicubic", align_corners=False)
    noise = noise - noise.amin(dim=(2, 3), keepdim=True)
    noise = (noise / noise.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6))[:, 0]
    plain = torch.zeros_like(u)
    patterns = torch.stack([gradient, stripes, checker, noise, plain], dim=1)  # [n, 5, S, S]
    kind = torch.randint(0, 5, (n,), generator=gen, device=device)
    t = patterns[torch.arange(n, device=device), kind][:, None]
    out = c1 + (c2 - c1) * t
    colour_noise = torch.randn(n, 3, size, size, generator=gen, device=device)
    out = out + colour_noise * _uniform(n, 0.0, 0.08, gen, device).view(n, 1, 1, 1)
    return out.clamp(0, 1)


def _affine(images: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor, shift_x: torch.Tensor,
            shift_y: torch.Tensor) -> torch.Tensor:
    """Place ``images`` scaled by (sx, sy) around the centre, shifted by (tx, ty) (in [-1, 1] units)."""
    n = images.shape[0]
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = 1.0 / scale_x
    theta[:, 1, 1] = 1.0 / scale_y
    theta[:, 0, 2] = -shift_x / scale_x
    theta[:, 1, 2] = -shift_y / scale_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _jitter_colour(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    n = x.shape[0]
    dev = x.device
    gain = _uniform(n, 1 - 0.35 * strength, 1 + 0.3 * strength, gen, dev).view(n, 1, 1, 1)
    channel = 1 + (torch.rand(n, 3, 1, 1, generator=gen, device=dev) - 0.5) * 0.25 * strength
    grey = x.mean(dim=1, keepdim=True)
    saturation = _uniform(n, 1 - 0.6 * strength, 1 + 0.4 * strength, gen, dev).view(n, 1, 1, 1)
    x = grey + (x - grey) * saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(n, 1 - 0.4 * strength, 1 + 0.3 * strength, gen, dev).view(n, 1, 1, 1)
    x = mean + (x - mean) * contrast
    return (x * gain * channel).clamp(0, 1)


def _jpeg(images: torch.Tensor, chosen: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """JPEG round trip (PIL, on the CPU) of the chosen images, at random qualities."""
    index = torch.nonzero(chosen).flatten().tolist()
    if not index:
        return images
    cpu = (images[index].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for array in cpu:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(rng.integers(25, 92)))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(np.asarray(decoded.convert("RGB")))
    images = images.clone()
    images[index] = torch.from_numpy(np.stack(out)).to(images.device).permute(0, 3, 1, 2).float() / 255.0
    return images


class ExampleMaker:
    """Draws batches of (image in [0, 1], target alpha in [0, 1]) on a device."""

    def __init__(self, objects: ObjectBank, backgrounds: torch.Tensor, size: int, config: SegmenterTrainConfig,
                 device: torch.device, seed: int = 0) -> None:
        self.objects = objects.to(device)
        self.backgrounds = backgrounds.to(device)
        self.size = size
        self.config = config
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)

    def _backgrounds(self, n: int) -> torch.Tensor:
        dev, gen, size = self.device, self.gen, self.size
        bg = procedural_backgrounds(n, size, gen, dev)
        if len(self.backgrounds):
            use_image = torch.rand(n, generator=gen, device=dev) < self.config.image_background_share
            pick = torch.randint(0, len(self.backgrounds), (n,), generator=gen, device=dev)
            images = self.backgrounds[pick].float() / 255.0
            flip = torch.rand(n, generator=gen, device=dev) < 0.5
            images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
            bg = torch.where(use_image.view(n, 1, 1, 1), images, bg)
        # scenes have edges: half the time a second background fills a region (table/wall split, a blob)
        other = bg[torch.randperm(n, generator=gen, device=dev)]
        lin = torch.linspace(-1, 1, size, device=dev)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        angle = _uniform(n, 0, 2 * math.pi, gen, dev).view(n, 1, 1)
        offset = _uniform(n, -0.8, 0.8, gen, dev).view(n, 1, 1)
        split = ((torch.cos(angle) * xx + torch.sin(angle) * yy - offset) > 0).float()
        cx, cy = (_uniform(n, -1, 1, gen, dev).view(n, 1, 1) for _ in range(2))
        rx, ry = (_uniform(n, 0.1, 0.6, gen, dev).view(n, 1, 1) for _ in range(2))
        blob = ((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) < 1).float()
        kind = torch.randint(0, 4, (n, 1, 1), generator=gen, device=dev)
        region = torch.where(kind == 0, split, torch.where(kind == 1, blob, torch.zeros_like(split)))[:, None]
        region = _box_blur(region, 1)
        bg = bg * (1 - region) + other * region
        bg = _jitter_colour(bg, gen)
        blurred = torch.rand(n, generator=gen, device=dev) < 0.25
        bg = torch.where(blurred.view(n, 1, 1, 1), _box_blur(bg, 2), bg)
        return bg

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        dev, gen, cfg = self.device, self.gen, self.config
        pick = torch.randint(0, len(self.objects), (n,), generator=gen, device=dev)
        premultiplied = self.objects.premultiplied[pick].float() / 255.0
        alpha = self.objects.alpha[pick].float() / 255.0
        flip = torch.rand(n, generator=gen, device=dev) < 0.5
        premultiplied = torch.where(flip.view(n, 1, 1, 1), premultiplied.flip(-1), premultiplied)
        alpha = torch.where(flip.view(n, 1, 1, 1), alpha.flip(-1), alpha)
        # object brightness/colour jitter (lighting differs between renders and photos)
        gain = _uniform(n, 0.7, 1.25, gen, dev).view(n, 1, 1, 1) * (
            1 + (torch.rand(n, 3, 1, 1, generator=gen, device=dev) - 0.5) * 0.15)
        premultiplied = torch.minimum(premultiplied * gain, alpha)
        scale = _uniform(n, 0.45, 1.2, gen, dev)
        aspect = torch.exp(_uniform(n, -0.12, 0.12, gen, dev))
        sx, sy = scale * aspect, scale / aspect
        tx = _uniform(n, -1, 1, gen, dev) * (1 - 0.55 * sx).clamp_min(0.05)
        ty = _uniform(n, -1, 1, gen, dev) * (1 - 0.55 * sy).clamp_min(0.05)
        layers = _affine(torch.cat([premultiplied, alpha], dim=1), sx, sy, tx, ty)
        premultiplied, alpha = layers[:, :3], layers[:, 3:]
        empty = torch.rand(n, generator=gen, device=dev) < cfg.empty_share
        premultiplied = premultiplied * (~empty).view(n, 1, 1, 1)
        alpha = alpha * (~empty).view(n, 1, 1, 1)
        bg = self._backgrounds(n)
        # soft cast shadow: the object's alpha shifted, squashed and blurred darkens the background
        shadowed = torch.rand(n, generator=gen, device=dev) < cfg.shadow_share
        shadow = _affine(alpha, torch.ones_like(sx), _uniform(n, 0.6, 1.0, gen, dev),
                         _uniform(n, -0.15, 0.15, gen, dev), _uniform(n, 0.0, 0.15, gen, dev))
        quarter = F.avg_pool2d(shadow, 4)  # blur at quarter size: the shadow is soft anyway, and it is cheap
        shadow = F.interpolate(_box_blur(quarter, 1), size=shadow.shape[-2:], mode="bilinear", align_corners=False)
        darkness = _uniform(n, 0.2, 0.65, gen, dev).view(n, 1, 1, 1) * shadowed.view(n, 1, 1, 1)
        bg = bg * (1 - darkness * shadow)
        image = premultiplied + bg * (1 - alpha)
        image = _jitter_colour(image, gen, strength=0.4)
        blurred = torch.rand(n, generator=gen, device=dev) < 0.15
        image = torch.where(blurred.view(n, 1, 1, 1), _box_blur(image, 1), image)
        noise = _uniform(n, 0.0, 0.04, gen, dev).view(n, 1, 1, 1)
        image = (image + noise * torch.randn(image.shape, generator=gen, device=dev)).clamp(0, 1)
        image = _jpeg(image, torch.rand(n, generator=gen, device=dev) < cfg.jpeg_share, self.rng)
        return image, alpha


# ---------------------------------------------------------------------------------------------- training
def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    union = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (union + 1)
    return bce + dice.mean()


def train_segmenter(objects: ObjectBank, backgrounds: torch.Tensor, config: SegmenterTrainConfig,
                    device: str | torch.device = "cpu", log: Any = None,
                    init: ForegroundSegmenter | None = None) -> tuple[ForegroundSegmenter, dict]:
    """Train from scratch (or on from ``init``); returns the model (eval mode, float32) and a summary."""
    device = torch.device(device)
    log = log or (lambda line: print(line, flush=True))
    torch.manual_seed(config.seed)
    if init is not None:
        model = init.float().train().to(device)
    else:
        model = ForegroundSegmenter(channels=tuple(config.channels), input_size=config.image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    maker = ExampleMaker(objects, backgrounds, config.image_size, config, device, seed=config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    start = time.perf_counter()
    cpu_start = time.process_time()
    step, losses, progress = 0, [], 0.0
    model.train()
    while progress < 1.0:
        elapsed = time.perf_counter() - start
        progress = step / config.steps
        if config.time_limit_s:
            progress = max(progress, elapsed / config.time_limit_s)
        if progress >= 1.0:
            break
        warmup = min(1.0, step / 100)
        lr = config.learning_rate * warmup * 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            images, target = maker.batch(config.batch_size)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(images)
        loss = _loss(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % config.log_every == 0:
            log(f"step {step} loss {np.mean(losses[-config.log_every:]):.4f} lr {lr:.2e} "
                f"{time.perf_counter() - start:.0f}s")
    model.eval()
    summary = {"steps": step, "seconds": round(time.perf_counter() - start, 1),
               "cpu_seconds": round(time.process_time() - cpu_start, 1), "from_weights": init is not None,
               "final_loss": float(np.mean(losses[-50:])) if losses else None,
               "objects": len(objects), "backgrounds": int(len(backgrounds)), "device": str(device),
               "parameters": sum(p.numel() for p in model.parameters())}
    return model.float(), summary


# ---------------------------------------------------------------------------------------------- evaluation
def composite_eval_set(objects: ObjectBank, backgrounds: torch.Tensor, count: int, seed: int = 1234,
                       jpeg_quality: int | None = 85) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic test images uint8 [N, S, S, 3] and true masks bool [N, S, S] at the bank's size.

    Objects at a random scale (0.55-1.0 of the render framing) and shift, backgrounds from ``backgrounds``
    (procedural when it is empty), a mild JPEG; no other augmentation: the test is the background.
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    size = int(objects.alpha.shape[-1])
    n = min(count, len(objects))
    pick = torch.randperm(len(objects), generator=gen)[:n]
    premultiplied = objects.premultiplied[pick].float() / 255.0
    alpha = objects.alpha[pick].float() / 255.0
    scale = _uniform(n, 0.55, 1.0, gen, torch.device("cpu"))
    tx = _uniform(n, -1, 1, gen, torch.device("cpu")) * (1 - scale) * 0.8
    ty = _uniform(n, -1, 1, gen, torch.device("cpu")) * (1 - scale) * 0.8
    layers = _affine(torch.cat([premultiplied, alpha], dim=1), scale, scale, tx, ty)
    premultiplied, alpha = layers[:, :3], layers[:, 3:]
    if len(backgrounds):
        order = torch.randint(0, len(backgrounds), (n,), generator=gen)
        bg = backgrounds[order].float() / 255.0
        if bg.shape[-1] != size:
            bg = F.interpolate(bg, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        bg = procedural_backgrounds(n, size, gen, torch.device("cpu"))
    image = premultiplied + bg * (1 - alpha)
    if jpeg_quality is not None:
        arrays = (image.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        decoded = []
        for array in arrays:
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=jpeg_quality)
            buffer.seek(0)
            with Image.open(buffer) as im:
                decoded.append(np.asarray(im.convert("RGB")))
        images = np.stack(decoded)
    else:
        images = (image.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    del rng
    return images, (alpha[:, 0] >= 0.5).numpy()


def evaluate_segmenter(model: ForegroundSegmenter, images: np.ndarray, masks: np.ndarray,
                       config: SegmenterConfig = SegmenterConfig()) -> dict:
    """Mask IoU of the shipped inference path (refinement included) per image, with its summary."""
    model = model.float().cpu().eval()
    ious, confidences, seconds = [], [], []
    for image, mask in zip(images, masks):
        start = time.perf_counter()
        result = segment(image, config, model=model)
        seconds.append(time.perf_counter() - start)
        ious.append(mask_iou(result.mask, mask))
        confidences.append(result.confidence)
    ious_a = np.asarray(ious)
    return {"images": len(ious), "mean_iou": round(float(ious_a.mean()), 4),
            "median_iou": round(float(np.median(ious_a)), 4),
            "share_iou_at_least_0.85": round(float((ious_a >= 0.85).mean()), 4),
            "mean_confidence": round(float(np.mean(confidences)), 4),
            "share_low_confidence": round(float((np.asarray(confidences) < config.min_confidence).mean()), 4),
            "seconds_per_image": round(float(np.median(seconds)), 4)}
