"""Hostile and careless input (issue 18): nothing runs from a file, no good checkpoint is lost, bounded
resources, atomic rewrites, and every bad input gets one line and exit code 2 before any compute."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zero1to3.cli import main
from zero1to3.inputs import ImageInputError, MAX_INPUT_PIXELS, open_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "zero1to3" / "weights" / "tiny"


# ------------------------------------------------------------------------------------------ helpers
class _Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"state": _Payload(marker)}, f)


def _run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_line_error(code: int, err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle.lower() in lines[0].lower(), lines[0]


def _png(path: Path, size: int = 64, mode: str = "RGBA") -> Path:
    rgba = np.full((size, size, 4), 255, np.uint8)
    rgba[..., 3] = 0
    rgba[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = (200, 40, 40, 255)
    Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    return path


# ------------------------------------------------------------------------------------------ images
def test_bomb_is_refused_before_decoding(tmp_path):
    """A small file claiming 8000x8000 px is refused from its header: no pixel buffer is allocated."""
    big = tmp_path / "big.png"
    Image.new("1", (8000, 8000)).save(big)  # 1-bit, compresses to a few KB
    assert big.stat().st_size < 100_000
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ImageInputError, match="MP limit"):
        open_image(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000  # decoding would take 64 MB (RGB 192 MB)
    assert 8000 * 8000 > MAX_INPUT_PIXELS


def test_sixteen_bit_grayscale_keeps_its_range(tmp_path):
    """I;16 PNGs are scaled to 8 bit, not clipped to white (the object survives)."""
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(open_image(path))
    assert rgb.shape == (64, 64, 3)
    expected = np.round(ramp / 257.0)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert len(np.unique(rgb[..., 0])) > 200  # the clipping bug left two values (0 and 255)


def test_cmyk_palette_alpha_and_exif(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 16), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
    img = open_image(cmyk)
    assert img.mode == "RGB" and img.size == (32, 16)
    r, g, b = np.asarray(img)[8, 16]
    assert r > 200 and g < 60 and b < 60

    pal_alpha = Image.new("P", (16, 16), 0)
    pal_alpha.putpalette([255, 255, 255, 10, 20, 30] + [0] * 762)
    pal_alpha.paste(1, (4, 4, 12, 12))
    pal_alpha.info["transparency"] = 0
    pal_alpha.save(tmp_path / "pal.png", transparency=0)
    img = open_image(tmp_path / "pal.png")
    assert img.mode == "RGBA"
    alpha = np.asarray(img)[..., 3]
    assert alpha[0, 0] == 0 and alpha[8, 8] == 255

    la = Image.new("LA", (16, 16), (128, 0))
    la.save(tmp_path / "la.png")
    assert open_image(tmp_path / "la.png").mode == "RGBA"

    exif_path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (0, 0, 255)).save(exif_path, exif=exif.tobytes())
    assert open_image(exif_path).size == (20, 40)


def test_truncated_and_garbage_images_are_one_line_errors(tmp_path):
    good = _png(tmp_path / "good.png", 128)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all" * 10)
    for path in (cut, garbage):
        with pytest.raises(ImageInputError) as info:
            open_image(path)
        assert len(str(info.value).splitlines()) == 1 and path.name in str(info.value)


def test_sixteen_bit_input_gives_the_same_preprocessed_object(tmp_path):
    """The issue's case: an I;16 photo preprocessed as the same photo in 8 bit (the object is found)."""
    from zero1to3.preprocess import preprocess_image

    gray8 = np.full((96, 96), 250, np.uint8)
    gray8[24:72, 30:66] = 40
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    a = np.asarray(preprocess_image(tmp_path / "g8.png")).astype(int)
    b = np.asarray(preprocess_image(tmp_path / "g16.png")).astype(int)
    assert np.abs(a - b).max() <= 2
    assert (a < 100).mean() > 0.2  # the dark object fills the crop


# ------------------------------------------------------------------------------------------ CLI input
@pytest.fixture()
def image(tmp_path) -> Path:
    return _png(tmp_path / "obj.png")


def _bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.png"
    Image.new("1", (8000, 8000)).save(path)
    return path


NVS_BAD = [
    (["--eta", "nan"], "--eta"),
    (["--eta", "2"], "--eta"),
    (["--radius", "1e30"], "--radius"),
    (["--polar", "500"], "--polar"),
    (["--guidance", "inf"], "--guidance"),
    (["--seed", str(2**70)], "--seed"),
    (["--steps", "0"], "--steps"),
    (["-n", "0"], "--num-samples"),
    (["--foreground-ratio", "3"], "--foreground-ratio"),
]


@pytest.mark.parametrize("extra,needle", NVS_BAD)
def test_nvs_bad_numbers(capsys, tmp_path, image, extra, needle):
    out = tmp_path / "out"
    code, err = _run_cli(capsys, ["nvs", str(image), "-o", str(out), "--device", "cpu"] + extra)
    _assert_one_line_error(code, err, needle)
    assert not out.exists()


ORBIT_BAD = [
    (["--fps", "0"], "--fps"),
    (["--fps", "-3"], "--fps"),
    (["--views", "0"], "--views"),
    (["--elevation", "120"], "--elevation"),
    (["--eta", "nan"], "--eta"),
]


@pytest.mark.parametrize("extra,needle", ORBIT_BAD)
def test_orbit_bad_numbers(capsys, tmp_path, image, extra, needle):
    out = tmp_path / "o.gif"
    code, err = _run_cli(capsys, ["orbit", str(image), "-o", str(out), "--device", "cpu"] + extra)
    _assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_output_paths_checked_before_compute(capsys, tmp_path, image):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "dir.gif"
    a_dir.mkdir()
    cases = [
        (["nvs", str(image), "-o", str(a_file)], "is a file"),
        (["orbit", str(image), "-o", str(a_dir)], "is a folder"),
        (["orbit", str(image), "-o", str(a_file / "x.gif")], "file, not a folder"),
        (["orbit", str(image), "-o", "/proc/zero1to3-test.gif"], "cannot write"),
        (["orbit", str(image), "-o", str(tmp_path / "x.png")], ".gif or .mp4"),
        (["recon", str(image), "-o", str(a_file), "--steps", "1"], "is a file"),
        (["nvs", str(image), "-o", str(tmp_path / "view.png")], "looks like a file name"),
        (["recon", str(image), "-o", str(tmp_path / "mesh.glb"), "--steps", "1"], "looks like a file name"),
    ]
    for argv, needle in cases:
        start = time.perf_counter()
        code, err = _run_cli(capsys, argv + ["--device", "cpu"])
        _assert_one_line_error(code, err, needle)
        assert time.perf_counter() - start < 20  # refused before the model is loaded or anything is sampled
    assert a_file.read_text() == "x" and not any(a_dir.iterdir())
    assert not (tmp_path / "view.png").exists() and not (tmp_path / "mesh.glb").exists()


@pytest.mark.parametrize("command", ["nvs", "orbit", "recon"])
def test_unreadable_and_bomb_images(capsys, tmp_path, command):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 50)
    out = tmp_path / ("out.gif" if command == "orbit" else "out")
    for path, needle in ((garbage, "cannot read image"), (_bomb(tmp_path), "MP limit")):
        code, err = _run_cli(capsys, [command, str(path), "-o", str(out), "--device", "cpu"])
        _assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_recon_bad_numbers(capsys, tmp_path, image):
    for extra, needle in ((["--batch-size", "0"], "batch_size"), (["--steps", "0"], "steps"),
                          (["--lr", "nan"], "lr"), (["--elevation", "100"], "elevation_deg"),
                          (["--seed", "-1"], "seed"), (["--preview-every", "0"], "--preview-every")):
        code, err = _run_cli(capsys, ["recon", str(image), "-o", str(tmp_path / "r"), "--device", "cpu"] + extra)
        _assert_one_line_error(code, err, needle)
    assert not (tmp_path / "r").exists()


def test_train_bad_settings(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for extra, needle in ((["--checkpoint-every", "0"], "checkpoint_every"),
                          (["--learning-rate", "nan"], "learning_rate"),
                          (["--learning-rate", "1e4"], "learning_rate"),
                          (["--batch-size", "0"], "batch_size"),
                          (["--on-nonfinite", "ignore"], "on_nonfinite")):
        code, err = _run_cli(capsys, ["train", "--data", str(data), "--output-dir", str(tmp_path / "run")] + extra)
        _assert_one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def _unet_weights(model: Path) -> Path:
    """The UNet's weight file in a model folder: the diffusers layout's, or the int8 storage the shipped model uses."""
    files = sorted((model / "unet").glob("*.safetensors"))
    assert len(files) == 1, files
    return files[0]


def test_convert_truncated_safetensors(capsys, tmp_path):
    src = SHIPPED / "vae" / "diffusion_pytorch_model.safetensors"
    cut = tmp_path / "model.safetensors"
    cut.write_bytes(src.read_bytes()[:5000])
    code, err = _run_cli(capsys, ["convert", str(cut), str(tmp_path / "out")])
    _assert_one_line_error(code, err, "damaged or truncated")
    assert not (tmp_path / "out").exists()


def test_model_folder_with_other_unet_weights(capsys, tmp_path, image):
    """A unet/ whose weights belong to another architecture: one line, not 'Cannot copy out of meta tensor'."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(SHIPPED, model)
    weights = _unet_weights(model)
    state = load_file(str(weights))
    save_file({k: v[..., :1].contiguous() if v.dim() > 1 else v for k, v in state.items()}, str(weights))
    code, err = _run_cli(capsys, ["nvs", str(image), "--model", str(model), "-o", str(tmp_path / "o"),
                                  "--device", "cpu", "--steps", "1", "-n", "1"])
    _assert_one_line_error(code, err, "cannot load model")


# ------------------------------------------------------------------------------------------ safe loading
def test_payloads_never_run_model_files(tmp_path, capsys, image):
    """Pickled payloads in every model file the project reads: refused, the payload never runs."""
    from zero1to3.checkpoint import CheckpointError, read_state_dict
    from zero1to3.pipeline import ModelLoadError, Zero123Pipeline

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "extra": _Payload(marker)}, ckpt)
    with pytest.raises(CheckpointError):
        read_state_dict(ckpt)
    assert not marker.exists()
    for component, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                            ("image_encoder", "model"), ("cc_projection", "diffusion_pytorch_model")):
        model = tmp_path / f"model_{component}"
        shutil.copytree(SHIPPED, model)
        for weights in (model / component).glob("*.safetensors"):
            weights.unlink()
        torch.save({"weight": _Payload(marker)}, model / component / ("pytorch_model.bin" if component ==
                                                                       "image_encoder" else f"{name}.bin"))
        with pytest.raises(ModelLoadError):
            Zero123Pipeline.from_pretrained(model)
        assert not marker.exists(), component


def test_payloads_never_run_data_files(tmp_path):
    from zero1to3.data.dataset import load_views_array
    from zero1to3.evaluation.views import list_objects

    marker = tmp_path / "pwned"
    data = tmp_path / "data"
    from zero1to3.camera import sample_reference_cameras

    rng = np.random.default_rng(0)
    for obj in ("a", "b"):
        (data / obj).mkdir(parents=True)
        for v, pose in enumerate(sample_reference_cameras(rng, 3)):
            _png(data / obj / f"{v:03d}.png")
            np.save(data / obj / f"{v:03d}.npy", pose.astype(np.float32))
    _plant(data / "a" / "001.npy", marker)  # a pickled object where a pose belongs
    images, poses, names = load_views_array(data, 32, cache_dir=tmp_path / "cache")
    assert names == ["b"]  # the object with the bad pose is skipped (logged with the file name)
    objects = list_objects(data)
    bad = next(o for o in objects if o.name == "a")
    assert "001" not in bad.views and "001.npy" in bad.skipped["001"]
    # a cache file replaced by a pickle is ignored, not unpickled
    cache = next((tmp_path / "cache").glob("*.npz"))
    _plant(cache, marker)
    load_views_array(data, 32, cache_dir=tmp_path / "cache")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ training
def _arrays(n=4, v=3, size=64):
    from zero1to3.camera import sample_reference_cameras

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, v, size, size, 3), dtype=np.uint8)
    poses = np.stack([sample_reference_cameras(rng, v) for _ in range(n)]).astype(np.float32)
    return images, poses


def _config(out: Path, **kw):
    from zero1to3.training import TrainConfig

    base = dict(output_dir=str(out), batch_size=2, max_steps=2, checkpoint_every=2, sample_every=0, log_every=1,
                train_image_encoder=True, ema_decay=0.9, learning_rate=1e-3, warmup_steps=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from zero1to3.training import Trainer

    out = tmp_path_factory.mktemp("trained") / "run"
    Trainer(_config(out), arrays=_arrays()).fit()
    return out


def test_resume_state_is_safetensors_and_payloads_never_run(tmp_path, trained_run):
    """The EMA is stored as safetensors; a payload in any resume file is refused without running."""
    from zero1to3.training import Trainer

    ckpt = trained_run / "checkpoints" / "step_00000002"
    names = sorted(p.name for p in ckpt.iterdir())
    assert "ema.safetensors" in names and not any(n.endswith(".pt") for n in names)
    marker = tmp_path / "pwned"
    targets = [n for n in names if n.endswith((".bin", ".pkl"))] + ["ema.safetensors"]
    assert {"optimizer.bin", "scheduler.bin"} <= set(targets)
    for name in targets:
        run = tmp_path / f"run_{name}"
        shutil.copytree(trained_run, run)
        _plant(run / "checkpoints" / "step_00000002" / name, marker)
        if name.startswith("random_states"):  # accelerate skips unloadable RNG states (ours are unused)
            Trainer(_config(run, max_steps=4), arrays=_arrays())
        else:
            with pytest.raises(ValueError, match="cannot resume from"):
                Trainer(_config(run, max_steps=4), arrays=_arrays())
        assert not marker.exists(), name
    # an old-style pickled ema.pt is never loaded
    run = tmp_path / "run_legacy"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "step_00000002" / "ema.safetensors").unlink()
    _plant(run / "checkpoints" / "step_00000002" / "ema.pt", marker)
    with pytest.raises(ValueError, match="ema.pt"):
        Trainer(_config(run, max_steps=4), arrays=_arrays())
    assert not marker.exists()


def _nan_after(trainer, step: int):
    original = trainer.loss

    def loss(batch, generator, use_cache=True):
        value = original(batch, generator, use_cache)
        return value * float("nan") if trainer.step + 1 >= step else value
    trainer.loss = loss


def test_nonfinite_loss_stops_and_keeps_the_finite_checkpoint(tmp_path):
    from zero1to3.training import NonFiniteError, Trainer, latest_checkpoint

    trainer = Trainer(_config(tmp_path / "run", max_steps=8, checkpoint_every=1, keep_checkpoints=1),
                      arrays=_arrays())
    _nan_after(trainer, 3)
    with pytest.raises(NonFiniteError, match="step 3"):
        trainer.fit()
    kept = latest_checkpoint(tmp_path / "run")
    assert kept.name == "step_00000002"
    from safetensors.torch import load_file

    for name in ("model.safetensors", "ema.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(str(kept / name)).values())
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())  # the bad update was not applied


def test_nonfinite_skip_mode_drops_the_update(tmp_path):
    from zero1to3.training import NonFiniteError, Trainer

    trainer = Trainer(_config(tmp_path / "run", max_steps=4, on_nonfinite="skip"), arrays=_arrays())
    original = trainer.loss
    trainer.loss = lambda b, g, use_cache=True: original(b, g, use_cache) * (float("nan") if trainer.step == 2 else 1)
    result = trainer.fit()
    assert result["step"] == 4 and result["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())
    # a run where every update is non-finite stops instead of spinning
    trainer = Trainer(_config(tmp_path / "run2", max_steps=4, on_nonfinite="skip", max_skipped_in_a_row=2),
                      arrays=_arrays())
    _nan_after(trainer, 1)
    with pytest.raises(NonFiniteError, match="2 updates in a row"):
        trainer.fit()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fused AdamW skips on the device)")
@pytest.mark.parametrize("mode", ["skip", "stop"])
def test_nonfinite_guard_on_the_gpu_path(tmp_path, mode):
    """On CUDA the flagged update is skipped by fused AdamW's found_inf (no host sync per step)."""
    from zero1to3.training import NonFiniteError, Trainer

    trainer = Trainer(_config(tmp_path / "run", max_steps=6, on_nonfinite=mode, nonfinite_check_every=3,
                              mixed_precision="bf16"), arrays=_arrays())
    assert trainer.optimizer.param_groups[0].get("fused")
    original = trainer.loss
    trainer.loss = lambda b, g, use_cache=True: original(b, g, use_cache) * (float("nan") if trainer.step == 1 else 1)
    if mode == "stop":
        with pytest.raises(NonFiniteError, match="by step 3"):
            trainer.fit()
    else:
        assert trainer.fit()["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())
    assert all(torch.isfinite(t).all() for t in trainer.ema.shadow_params)


def test_rotation_never_deletes_the_newest_finite_checkpoint(tmp_path):
    from zero1to3.training import _prune

    root = tmp_path / "checkpoints"
    for step, finite in ((1, True), (2, True), (3, None), (4, None)):  # 3, 4: written by an older version
        folder = root / f"step_{step:08d}"
        folder.mkdir(parents=True)
        state = {"step": step} if finite is None else {"step": step, "finite": finite}
        (folder / "trainer_state.json").write_text(json.dumps(state))
    _prune(root, keep=1)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000002", "step_00000004"]


def test_resume_refuses_changed_settings_unless_overridden(tmp_path, trained_run):
    from zero1to3.training import ResumeSettingsError, Trainer

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with pytest.raises(ResumeSettingsError, match="learning_rate"):
        Trainer(_config(run, max_steps=4, learning_rate=5e-4), arrays=_arrays())
    assert json.loads((run / "config.json").read_text())["learning_rate"] == 1e-3  # not rewritten
    resumed = Trainer(_config(run, max_steps=4, learning_rate=5e-4, override=True), arrays=_arrays())
    assert resumed.step == 2 and resumed.changed_settings == {"learning_rate": (1e-3, 5e-4)}
    base, projection = (g["lr"] for g in resumed.optimizer.param_groups)
    assert base == pytest.approx(5e-4) and projection == pytest.approx(5e-3)
    assert json.loads((run / "config.json").read_text())["learning_rate"] == 5e-4
    # budgets may change freely
    more = Trainer(_config(run, max_steps=6, learning_rate=5e-4, checkpoint_every=3), arrays=_arrays())
    assert more.step == 2 and more.changed_settings == {}


def test_metrics_have_one_line_per_step_after_a_kill(tmp_path, trained_run):
    """Steps logged after the last checkpoint (and a line cut by the kill) are dropped on resume."""
    from zero1to3.training import Trainer

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with (run / "metrics.jsonl").open("a") as f:  # the killed run got to step 3 and died mid-line
        f.write(json.dumps({"step": 3, "loss": 0.5}) + "\n" + '{"step": 4, "lo')
    Trainer(_config(run, max_steps=4), arrays=_arrays()).fit()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_signal_stop_saves_and_exits_non_zero(tmp_path, capsys):
    """SIGTERM during `zero1to3 train`: a checkpoint at that step, exit code 143, no export."""
    from zero1to3.training import Trainer, latest_checkpoint

    data = tmp_path / "data"
    assert main(["render", "-o", str(data), "--procedural", "2", "--views", "3", "--resolution", "32",
                 "--quiet"]) == 0
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    original = Trainer.loss

    def loss(self, batch, generator, use_cache=True):
        if self.step == 1:
            signal.raise_signal(signal.SIGTERM)
        return original(self, batch, generator, use_cache)

    Trainer.loss = loss
    try:
        code = main(["train", "--data", str(data), "--output-dir", str(tmp_path / "run"), "--batch-size", "2",
                     "--max-steps", "50", "--sample-every", "0", "--log-every", "1", "--train-image-encoder",
                     "--export", str(tmp_path / "model")])
    finally:
        Trainer.loss = original
    assert code == 128 + signal.SIGTERM
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    assert not (tmp_path / "model").exists()
    # the dataset is read, never written: the view cache went to the run folder
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before
    assert list((tmp_path / "run" / "cache").glob("*.npz"))


# ------------------------------------------------------------------------------------------ atomic writes
_KILL_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from types import SimpleNamespace
    kind, folder = sys.argv[1], Path(sys.argv[2])
    if kind == "results":  # only what the kind needs: the child's start-up is the test's cost
        from zero1to3.evaluation.results import ResultStore
    elif kind == "meta":
        from zero1to3.data.writer import render_dataset
    elif kind == "metrics":
        from zero1to3.training import Trainer
    else:
        from zero1to3.atomic import write_json_atomic

    def rewrite():
        if kind == "results":
            with open(folder / "results.jsonl", "a") as f:
                f.write('{"object": "cut')  # a line cut by an earlier kill: every start rewrites the file
            ResultStore(folder, {"k": 1})
        elif kind == "meta":
            render_dataset(folder, [], num_views=3, resolution=32, progress=False)
        elif kind == "metrics":
            with open(folder / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": 999}) + "\\n")
            Trainer._truncate_metrics(SimpleNamespace(out=folder), 500)
        elif kind == "config":
            write_json_atomic(folder / "config.json", {"padding": "x" * 200000, "k": 1})

    rewrite()  # imports and a first complete rewrite done
    if sys.argv[3] == "mid-write":  # die half-way through the next file write, as a kill at the worst moment
        import os, pathlib, signal

        def half_then_die(self, data, *args, **kwargs):
            raw = data.encode() if isinstance(data, str) else data
            with open(self, "wb") as f:
                f.write(raw[: len(raw) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        pathlib.Path.write_bytes = half_then_die
        pathlib.Path.write_text = half_then_die
        rewrite()
    print("ready", flush=True)
    while True:
        rewrite()
""")


def _prepare(kind: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "results":
        (folder / "config.json").write_text(json.dumps({"k": 1}))
        lines = [json.dumps({"object": f"obj{i:04d}", "scores": {"psnr": float(i)}, "pad": "x" * 200})
                 for i in range(2000)]
        (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    elif kind == "metrics":
        (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.1, "pad": "x" * 100}) + "\n"
                                                      for s in range(1, 501)))


def _check(kind: str, folder: Path) -> None:
    if kind == "results":
        lines = (folder / "results.jsonl").read_text().splitlines()
        names = {json.loads(line)["object"] for line in lines if not line.startswith('{"object": "cut')
                 or line.endswith("}")}
        assert len(names) == 2000
    elif kind == "meta":
        assert json.loads((folder / "meta.json").read_text())["num_views"] == 3
    elif kind == "metrics":
        steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert steps[:500] == list(range(1, 501))
    elif kind == "config":
        assert json.loads((folder / "config.json").read_text())["k"] == 1


@pytest.mark.parametrize("kind", ["results", "meta", "metrics", "config"])
def test_kill_during_rewrite_loses_nothing(tmp_path, kind):
    """A process killed half-way through writing the file (deterministically, by making its file write die
    there), then one killed at a random moment of a rewrite loop: the file is whole both times. With a
    plain in-place rewrite the first case truncates the file."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    folder = tmp_path / kind
    _prepare(kind, folder)
    child = subprocess.run([sys.executable, "-c", _KILL_CHILD, kind, str(folder), "mid-write"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    _check(kind, folder)
    child = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, kind, str(folder), "loop"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    time.sleep(0.2)
    child.kill()
    child.wait()
    _check(kind, folder)


def test_render_refuses_other_settings_in_the_same_folder(capsys, tmp_path):
    out = tmp_path / "data"
    assert main(["render", "-o", str(out), "--procedural", "1", "--views", "2", "--resolution", "32",
                 "--quiet"]) == 0
    meta = (out / "meta.json").read_text()
    code, err = _run_cli(capsys, ["render", "-o", str(out), "--procedural", "1", "--views", "2",
                                  "--resolution", "48", "--quiet"])
    _assert_one_line_error(code, err, "resolution")
    assert (out / "meta.json").read_text() == meta


# ------------------------------------------------------------------------------------------ chunking
def test_orbit_in_chunks_writes_every_frame(capsys, tmp_path, image):
    out = tmp_path / "o.gif"
    assert main(["orbit", str(image), "-o", str(out), "--views", "5", "--chunk-size", "2", "--steps", "2",
                 "--device", "cpu", "--no-preprocess"]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.gif")]


def test_nvs_chunks_match_one_batch_when_the_chunk_holds_everything(tmp_path, image):
    args = ["nvs", str(image), "--azimuth", "30", "90", "--polar", "0", "-n", "2", "--steps", "2",
            "--device", "cpu", "--no-preprocess"]
    assert main(args + ["-o", str(tmp_path / "a"), "--chunk-size", "64"]) == 0
    assert main(args + ["-o", str(tmp_path / "b"), "--chunk-size", "2"]) == 0
    a = sorted((tmp_path / "a").glob("view*.png"))
    b = sorted((tmp_path / "b").glob("view*.png"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 4
    from zero1to3.pipeline import Zero123Pipeline
    from zero1to3.camera import RelativePose

    pipe = Zero123Pipeline.from_pretrained(dtype=torch.float32)  # what the CLI loads on a CPU
    ref = pipe(str(image), [RelativePose.from_degrees(0, 30, 0), RelativePose.from_degrees(0, 90, 0)], num_samples=2,
               num_inference_steps=2, seed=0, preprocess=False)
    assert np.array_equal(np.asarray(Image.open(a[0])), ref.array[0, 0])


# ------------------------------------------------------------------------------------------ eval readers
def test_eval_skips_a_corrupt_input_view(tmp_path):
    from zero1to3.evaluation.nvs import evaluate_nvs
    from zero1to3.pipeline import Zero123Pipeline

    data = tmp_path / "data"
    assert main(["render", "-o", str(data), "--procedural", "2", "--views", "3", "--resolution", "32",
                 "--quiet"]) == 0
    first = sorted(p for p in data.iterdir() if p.is_dir())[0]
    (first / "000.png").write_bytes(b"\x89PNG broken")
    pipe = Zero123Pipeline.from_pretrained()
    result = evaluate_nvs(pipe, data, input_view="000", num_inference_steps=2, progress=False,
                          out_dir=tmp_path / "eval", metrics=_cheap_metrics())
    assert len(result.objects) == 1
    assert any(first.name in n and "000.png" in n for n in result.notices)
    # without a fixed input view, the broken one is replaced and the object kept
    result = evaluate_nvs(pipe, data, num_inference_steps=2, progress=False, out_dir=tmp_path / "eval2",
                          metrics=_cheap_metrics())
    assert len(result.objects) == 2


def _cheap_metrics():
    from zero1to3.evaluation.metrics import ImageMetrics

    return ImageMetrics(lpips_weights=None, fid_weights=None)


# ------------------------------------------------------------------------------------------ demo
def test_page_messages_hide_paths_and_exception_text():
    from zero1to3.app import page_message

    assert page_message(ImageInputError("cannot read image up.png: damaged or truncated (broken data stream)")) \
        == "Cannot read image up.png: damaged or truncated."
    assert "/tmp" not in page_message(ImageInputError("image file not found: /tmp/gradio/ab12/up.png"))
    text = page_message(OverflowError("Overflow when unpacking long long"))
    assert "Overflow" not in text and "try again" in text
