"""Pipeline behaviour on the tiny preset (random weights): CFG structure, batching, seeds, I/O round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from zero1to3.camera import RelativePose
from zero1to3.pipeline import (SCHEDULERS, ModelLoadError, Zero123Pipeline, denoiser_steps, make_scheduler,
                               reference_ddim_timesteps, sampler_timesteps)


@pytest.fixture(scope="module")
def pipe(tiny_pipe):
    return tiny_pipe


@pytest.fixture(scope="module")
def photo():
    """An RGB 'photo': a red block and a blue ball on a light grey background."""
    img = np.full((96, 120, 3), 235, np.uint8)
    img[30:70, 20:60] = (200, 30, 30)
    yy, xx = np.mgrid[:96, :120]
    img[(yy - 50) ** 2 + (xx - 85) ** 2 < 15**2] = (30, 30, 200)
    return Image.fromarray(img)


def test_shapes_and_batching(pipe, photo):
    poses = [RelativePose.from_degrees(0, 90), RelativePose.from_degrees(-20, 180, 0.1)]
    out = pipe(photo, poses, num_samples=3, num_inference_steps=3, seed=0)
    assert out.array.shape == (2, 3, 64, 64, 3) and out.array.dtype == np.uint8
    assert len(out.images) == 6 and out.images[4].size == (64, 64)  # flat, pose-major (diffusers)
    assert len(out.images_per_pose) == 2 and len(out.images_per_pose[0]) == 3
    assert np.array_equal(np.asarray(out.images[4]), out.array[1, 1])
    assert out.grid().size == (4 * 64, 2 * 64)
    # samples of one pose differ (different noise), so the model is generative
    assert not np.array_equal(out.array[0, 0], out.array[0, 1])


def test_seed_reproducible_and_batch_size_independent(pipe, photo):
    """Each image's noise comes from its own generator: the chunking of views changes nothing."""
    poses = [RelativePose.from_degrees(0, 30), RelativePose.from_degrees(0, 60)]
    kwargs = dict(num_samples=2, num_inference_steps=3, seed=7, eta=1.0)  # eta 1: every step's noise matters
    a = pipe(photo, poses, **kwargs).array
    for batch_size in (1, 3, 4):  # one view at a time, a chunk that splits a pose's samples, all at once
        b = pipe(photo, poses, batch_size=batch_size, **kwargs).array
        diff = np.abs(b.astype(int) - a.astype(int))  # float summation order moves a rare pixel by one step
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, batch_size
    c = pipe(photo, poses, **{**kwargs, "seed": 8}).array
    assert not np.array_equal(a, c)
    # seed 8 is not seed 7 shifted by one view (view seeds are mixed, not consecutive)
    assert not np.array_equal(a[0, 1], c[0, 0])
    # a view's images depend only on its place in the request: the first pose alone gives the same pair
    alone = pipe(photo, poses[:1], **kwargs).array[0]
    assert np.abs(alone.astype(int) - a[0].astype(int)).max() <= 1


def test_shared_generator_with_chunks_is_refused(pipe, photo):
    with pytest.raises(ValueError, match="chunking"):
        pipe(photo, [RelativePose.from_degrees(0, 30)], num_samples=2, num_inference_steps=2, batch_size=1,
             generator=torch.Generator().manual_seed(0))


def test_guidance_combines_zero_uncond_branch(pipe):
    """guided = e_u + s (e_c - e_u) with e_u computed from zero context and zero concat latent."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=g)
    images = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        cond = pipe.encode_condition(images)
        vec = pipe.pose_vectors([RelativePose.from_degrees(10, 45), RelativePose.from_degrees(-5, 200)])
        guided = pipe.guided_noise(x, 500, cond, vec, guidance_scale=3.0)
        ctx = pipe.context(cond, vec)
        t = torch.tensor([500, 500])
        e_c = pipe.unet_eps(x, t, cond.concat_latent, ctx)
        e_u = pipe.unet_eps(x, t, torch.zeros_like(cond.concat_latent), torch.zeros_like(ctx))
    torch.testing.assert_close(guided, e_u + 3.0 * (e_c - e_u), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        plain = pipe.guided_noise(x, 500, cond, vec, guidance_scale=1.0)
    torch.testing.assert_close(plain, e_c, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # one timestep per sample (score distillation draws them independently)
        per_sample = pipe.guided_noise(x, torch.tensor([500, 200]), cond, vec, guidance_scale=3.0)
        second = pipe.guided_noise(x[1:], 200, type(cond)(
            cond.clip_embedding[1:], cond.concat_latent[1:]), vec[1:], guidance_scale=3.0)
    torch.testing.assert_close(per_sample[0], guided[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_sample[1], second[0], atol=1e-5, rtol=1e-5)


def test_context_is_one_token_and_concat_unscaled(pipe):
    images = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        cond = pipe.encode_condition(images)
        ctx = pipe.context(cond, pipe.pose_vectors([RelativePose(0.0, 0.0)]))
        mode = pipe.vae.encode(images).latent_dist.mode()
    assert ctx.shape == (1, 1, pipe.unet.config.cross_attention_dim)
    torch.testing.assert_close(cond.concat_latent, mode)  # no scaling factor applied


def test_camera_projection_identity_init():
    from zero1to3.model import CameraProjection

    proj = CameraProjection(260, 256)
    proj.reset_to_identity()
    emb = torch.randn(3, 1, 256)
    with torch.no_grad():
        out = proj(emb, torch.zeros(3, 4))
    torch.testing.assert_close(out, emb)
    assert proj.projection.bias.abs().max() == 0


def test_reference_trajectory_drops_first_step():
    from zero1to3.model import build_scheduler

    sched = make_scheduler("ddim", build_scheduler().config)
    steps = reference_ddim_timesteps(sched, 50)
    assert len(steps) == 49 and steps[0] == 961 and steps[-1] == 1


def test_dpm_solver_runs(pipe, photo):
    out = pipe(photo, RelativePose.from_degrees(0, 90), num_samples=1, num_inference_steps=4, scheduler="dpmsolver++")
    assert out.array.shape == (1, 1, 64, 64, 3)
    with pytest.raises(ValueError, match="unknown scheduler"):
        pipe(photo, RelativePose.from_degrees(0, 90), num_samples=1, num_inference_steps=2, scheduler="euler-x")


def test_pose_vector_input_and_validation(pipe, photo):
    out = pipe(photo, torch.zeros(2, 4), num_samples=1, num_inference_steps=2)
    assert out.array.shape[0] == 2
    with pytest.raises(ValueError, match="NaN"):
        pipe(photo, torch.full((1, 4), float("nan")), num_samples=1, num_inference_steps=2)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        pipe(photo, torch.zeros(2, 3), num_samples=1, num_inference_steps=2)


def test_stable_zero123_encoding_uses_input_polar(pipe):
    pipe.pose_encoding = "stable-zero123"
    try:
        vec = pipe.pose_vectors([RelativePose.from_degrees(10, 90, 0.3)], input_polar=1.0)
    finally:
        pipe.pose_encoding = "zero123"
    np.testing.assert_allclose(vec[0].numpy(), [np.radians(10), 1, 0, 1.0], atol=1e-6)


def test_save_load_round_trip_identical_outputs(pipe, photo, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    for folder in ("unet", "vae", "image_encoder", "feature_extractor", "scheduler", "cc_projection"):
        assert (tmp_path / "m" / folder).is_dir()
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["zero1to3"]["image_size"] == 64
    pipe.foreground_ratio = 0.55
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.foreground_ratio = 200 / 256
    loaded = Zero123Pipeline.from_pretrained(tmp_path / "m")
    assert loaded.foreground_ratio == pytest.approx(0.55)  # the model's input framing travels with it
    loaded.foreground_ratio = pipe.foreground_ratio
    a = pipe(photo, RelativePose.from_degrees(0, 90), num_samples=1, num_inference_steps=3, seed=1).array
    b = loaded(photo, RelativePose.from_degrees(0, 90), num_samples=1, num_inference_steps=3, seed=1).array
    np.testing.assert_array_equal(a, b)
    assert loaded.scheduler.config.steps_offset == 1 and not loaded.scheduler.config.set_alpha_to_one


def test_fp16_save_keeps_values(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "h", dtype=torch.float16)
    assert next(pipe.unet.parameters()).dtype == torch.float32  # the live model is untouched
    loaded = Zero123Pipeline.from_pretrained(tmp_path / "h", dtype=torch.float32)
    w0 = next(pipe.unet.parameters()).detach()
    w1 = next(loaded.unet.parameters()).detach()
    torch.testing.assert_close(w1, w0.half().float())


def test_missing_and_wrong_model_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="model path not found"):
        Zero123Pipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="missing unet/"):
        Zero123Pipeline.from_pretrained(tmp_path / "empty")


def test_bad_inputs(pipe, tmp_path):
    from zero1to3.preprocess import ImageInputError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageInputError, match="cannot read image"):
        pipe(str(bad), RelativePose.from_degrees(0, 90), num_inference_steps=2)
    with pytest.raises(ImageInputError, match="no object found"):
        pipe(np.full((64, 64, 3), 250, np.uint8), RelativePose.from_degrees(0, 90), num_inference_steps=2)
    with pytest.raises(ValueError, match="shape"):
        pipe(torch.zeros(1, 3, 32, 32), RelativePose.from_degrees(0, 90), num_inference_steps=2)
    with pytest.raises(ValueError, match="num_samples"):
        pipe(torch.zeros(1, 3, 64, 64), RelativePose.from_degrees(0, 90), num_samples=0)


def test_single_token_cross_attention_equals_standard_attention():
    """softmax over one key is 1: the shortcut processor must give the standard processor's UNet output,
    and longer contexts must fall back to the standard computation."""
    from zero1to3.model import (SingleTokenCrossAttention, build_unet, preset, use_single_token_cross_attention,
                                uses_single_token_cross_attention)

    torch.manual_seed(0)
    unet = build_unet(preset("tiny")).eval()
    size = unet.config.sample_size
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, size, size, generator=gen)
    t = torch.tensor([10, 500, 990])
    for tokens in (1, 3):
        ctx = torch.randn(3, tokens, unet.config.cross_attention_dim, generator=gen)
        with torch.no_grad():
            use_single_token_cross_attention(unet, False)
            want = unet(x, t, encoder_hidden_states=ctx).sample
            n = use_single_token_cross_attention(unet)
            got = unet(x, t, encoder_hidden_states=ctx).sample
        assert n == sum(name.endswith("attn2.processor") for name in unet.attn_processors) > 0
        assert uses_single_token_cross_attention(unet)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # the shortcut is taken for one token: the query projection is never called
    calls = []
    block_attn = next(m for name, m in unet.named_modules() if name.endswith("attn2"))
    hook = block_attn.to_q.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=torch.randn(3, 1, unet.config.cross_attention_dim))
    hook.remove()
    assert calls == [] and isinstance(block_attn.processor, SingleTokenCrossAttention)
    use_single_token_cross_attention(unet, False)
    assert not uses_single_token_cross_attention(unet)


def test_clip_preprocess_normalises_each_channel():
    """Hand-computed: a constant image c in [-1, 1] becomes ((c + 1) / 2 - mean_k) / std_k in channel k."""
    from zero1to3.model import CLIP_MEAN, CLIP_STD, clip_preprocess

    image = torch.full((2, 3, 16, 16), 0.5)
    out = clip_preprocess(image, 8)
    assert out.shape == (2, 3, 8, 8)
    for k in range(3):
        torch.testing.assert_close(out[:, k], torch.full((2, 8, 8), (0.75 - CLIP_MEAN[k]) / CLIP_STD[k]))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_denoiser_steps_is_what_the_sampler_runs(pipe, scheduler):
    """The one stated sampler fact (DDIM runs N-1 of N, DPM-Solver++ N) against the timesteps a run visits."""
    for n in (1, 2, 3, 20, 50):
        visited = sampler_timesteps(make_scheduler(scheduler, pipe.scheduler.config), n)
        assert denoiser_steps(n, scheduler) == len(visited)
    assert denoiser_steps(50, "ddim") == 49
