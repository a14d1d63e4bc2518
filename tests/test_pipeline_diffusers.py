"""diffusers conventions on Zero123Pipeline: each diffusers-style argument gives today's result, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from PIL import Image

from zero1to3.camera import RelativePose
from zero1to3.cpu_threads import SMALL_MODEL_PARAMETERS, choose_cpu_threads
from zero1to3.pipeline import NovelViewOutput, Zero123Pipeline
from zero1to3.seeding import view_seed

STEPS = 3


@pytest.fixture(scope="module")
def pipe():
    return Zero123Pipeline.from_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def photo():
    img = np.full((80, 80, 3), 240, np.uint8)
    img[20:60, 25:55] = (180, 40, 30)
    return Image.fromarray(img)


@pytest.fixture(scope="module")
def today(pipe, photo):
    """The call as the project documents it: RelativePose objects, num_samples, seed, PIL per pose."""
    poses = [RelativePose.from_degrees(0, 90, 0), RelativePose.from_degrees(-10, 180, 0.1)]
    return pipe(photo, poses, num_samples=2, num_inference_steps=STEPS, seed=3, return_latents=True)


def test_diffusers_style_call_equals_todays_call_bit_for_bit(pipe, photo, today):
    out = pipe(photo, [[0, 90, 0], [-10, 180, 0.1]], num_images_per_prompt=2, num_inference_steps=STEPS,
               generator=[torch.Generator().manual_seed(view_seed(3, k)) for k in range(4)], output_type="np")
    assert isinstance(out, NovelViewOutput)
    assert out.images.shape == (4, 64, 64, 3) and out.images.dtype == np.float32
    assert np.array_equal(np.round(out.images * 255).astype(np.uint8), today.array.reshape(4, 64, 64, 3))
    assert np.array_equal(out.array, today.array)
    with pytest.raises(ValueError, match="3 generators for 4 images"):
        pipe(photo, [[0, 90, 0], [-10, 180, 0.1]], num_images_per_prompt=2, num_inference_steps=STEPS,
             generator=[torch.Generator() for _ in range(3)])


def test_output_types_hold_the_same_pixels(pipe, photo, today):
    poses = [[0, 90, 0], [-10, 180, 0.1]]
    kwargs = dict(num_images_per_prompt=2, num_inference_steps=STEPS, seed=3)
    pil = pipe(photo, poses, **kwargs).images
    assert len(pil) == 4 and all(isinstance(im, Image.Image) for im in pil)
    assert np.array_equal(np.stack([np.asarray(im) for im in pil]), today.array.reshape(4, 64, 64, 3))
    pt = pipe(photo, poses, output_type="pt", **kwargs).images
    assert pt.shape == (4, 3, 64, 64) and pt.dtype == torch.float32
    assert torch.equal((pt * 255).round().to(torch.uint8).permute(0, 2, 3, 1),
                       torch.from_numpy(today.array.reshape(4, 64, 64, 3)))
    latent = pipe(photo, poses, output_type="latent", **kwargs)
    assert latent.array is None and torch.equal(latent.images, today.latents)
    (images,) = pipe(photo, poses, return_dict=False, output_type="np", **kwargs)
    assert np.array_equal(np.round(images * 255).astype(np.uint8), today.array.reshape(4, 64, 64, 3))
    assert [[np.asarray(im) for im in row] for row in today.images_per_pose][1][0].tolist() == \
        today.array[1, 0].tolist()


def test_pose_forms_agree(pipe, photo):
    kwargs = dict(num_samples=1, num_inference_steps=2, seed=1)
    reference = pipe(photo, [RelativePose.from_degrees(-20, 45, 0.2)], **kwargs).array
    for poses in (RelativePose.from_degrees(-20, 45, 0.2), [-20, 45, 0.2], [[-20, 45, 0.2]],
                  np.array([[-20.0, 45.0, 0.2]]), [(-20, 45, 0.2)]):
        assert np.array_equal(pipe(photo, poses, **kwargs).array, reference), poses
    vector = torch.from_numpy(RelativePose.from_degrees(-20, 45, 0.2).vector())[None]
    assert np.array_equal(pipe(photo, vector, **kwargs).array, reference)
    assert np.array_equal(pipe(photo, vector.numpy(), **kwargs).array, reference)
    with pytest.raises(ValueError, match="polar_deg"):
        pipe(photo, [[1, 2, 3, 4, 5]], **kwargs)


def test_assigned_scheduler_is_honoured(pipe, photo):
    kwargs = dict(num_samples=1, num_inference_steps=4, seed=2)
    original = pipe.scheduler
    named_dpm = pipe(photo, [[0, 90, 0]], scheduler="dpmsolver++", **kwargs).array
    ddim = pipe(photo, [[0, 90, 0]], **kwargs).array
    steps: list[int] = []
    try:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(original.config, algorithm_type="dpmsolver++",
                                                                 solver_order=2, timestep_spacing="trailing")
        assert np.array_equal(pipe(photo, [[0, 90, 0]], **kwargs).array, named_dpm)
        pipe.scheduler = DDIMScheduler.from_config(original.config)  # DDIM keeps the reference trajectory
        out = pipe(photo, [[0, 90, 0]], callback=lambda i, t, x, eps: steps.append(t), **kwargs).array
        assert np.array_equal(out, ddim) and len(steps) == 3
    finally:
        pipe.scheduler = original
    assert not np.array_equal(named_dpm, ddim)


def test_callback_on_step_end(pipe, photo, today):
    seen: list[tuple[int, int, tuple]] = []

    def record(p, step, t, kwargs):
        assert p is pipe
        seen.append((step, t, tuple(kwargs["latents"].shape)))
        return None

    poses = [[0, 90, 0], [-10, 180, 0.1]]
    out = pipe(photo, poses, num_samples=2, num_inference_steps=STEPS, seed=3, callback_on_step_end=record)
    assert np.array_equal(out.array, today.array)  # observing changes nothing
    assert [s for s, _, _ in seen] == list(range(STEPS - 1)) and seen[0][2] == (4, 4, 16, 16)
    assert seen[0][1] > seen[-1][1]  # timesteps descend

    def blank(p, step, t, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == STEPS - 2 else {}

    zeroed = pipe(photo, poses, num_samples=2, num_inference_steps=STEPS, seed=3, callback_on_step_end=blank,
                  output_type="latent")
    assert torch.count_nonzero(zeroed.images) == 0


def test_dtype_conventions(tmp_path):
    small = Zero123Pipeline.from_preset("tiny", seed=0)
    assert small.to(torch.float16).dtype == torch.float16 and small.device.type == "cpu"
    assert small.to("cpu", torch.float32).dtype == torch.float32
    assert small.to(dtype=torch.bfloat16).dtype == torch.bfloat16
    small.to(torch.float32).save_pretrained(tmp_path / "m")
    loaded = Zero123Pipeline.from_pretrained(tmp_path / "m", torch_dtype=torch.float16)
    assert loaded.dtype == torch.float16
    with pytest.raises(ValueError, match="disagree"):
        Zero123Pipeline.from_pretrained(tmp_path / "m", torch_dtype=torch.float16, dtype=torch.float32)


def test_argument_errors(pipe, photo):
    with pytest.raises(ValueError, match="disagree"):
        pipe(photo, [[0, 90, 0]], num_samples=2, num_images_per_prompt=3, num_inference_steps=2)
    with pytest.raises(ValueError, match="output_type"):
        pipe(photo, [[0, 90, 0]], num_samples=1, num_inference_steps=2, output_type="latents")
    out = pipe(photo, [[0, 90, 0]], num_images_per_prompt=3, num_inference_steps=2)
    assert out.array.shape[:2] == (1, 3)


def test_cpu_threads_choice_and_scope(pipe, photo, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_cpu_threads(SMALL_MODEL_PARAMETERS - 1) == 1
    assert choose_cpu_threads(SMALL_MODEL_PARAMETERS) is None  # large models: PyTorch's default
    assert choose_cpu_threads(10, explicit=3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_cpu_threads(10) == 2 and choose_cpu_threads(10, explicit=1) == 1
    with pytest.raises(ValueError):
        choose_cpu_threads(10, explicit=0)
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = torch.get_num_threads()
    inside: list[int] = []
    pipe.cpu_threads = None
    expected = choose_cpu_threads(pipe.num_parameters)
    pipe(photo, [[0, 90, 0]], num_samples=1, num_inference_steps=2,
         callback=lambda *a: inside.append(torch.get_num_threads()))
    assert inside == [expected or before]
    try:
        pipe.cpu_threads = 2
        inside.clear()
        pipe(photo, [[0, 90, 0]], num_samples=1, num_inference_steps=2,
             callback=lambda *a: inside.append(torch.get_num_threads()))
        assert inside == [2]
    finally:
        pipe.cpu_threads = None
    assert torch.get_num_threads() == before  # restored after the call
