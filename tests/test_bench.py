"""Issue 4: the sampling benchmark and the fast path (CUDA graphs). CPU tests use the tiny preset at tiny
sizes; GPU tests (``-m gpu``) compare the captured step with eager and are skipped without CUDA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zero1to3.benchmarking.flops import count_unet_flops
from zero1to3.benchmarking.quality import solver_agreement
from zero1to3.benchmarking.report import COLUMNS
from zero1to3.benchmarking.timing import synthetic_image
from zero1to3.camera import orbit
from zero1to3.fast import fast_mode
from zero1to3.pipeline import Zero123Pipeline

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def pipe(tiny_pipe):
    return tiny_pipe


def _sample(pipe, views: int = 2, steps: int = 3, scheduler: str = "ddim", guidance: float = 3.0) -> np.ndarray:
    return pipe(synthetic_image(pipe.image_size), orbit(views), num_samples=1, num_inference_steps=steps,
                scheduler=scheduler, guidance_scale=guidance, seed=0, preprocess=False).array


def test_cli_bench_end_to_end(tmp_path, capsys):
    from zero1to3.cli import main

    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    code = main(["bench", "--device", "cpu", "--random-weights", "--preset", "tiny", "--views", "1", "--steps", "2",
                 "--solver-steps", "1", "--repeats", "1", "--include-reference", "--no-quality",
                 "--json", str(out_json), "--output", str(out_md)])
    assert code == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| path"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(COLUMNS)
    assert out_md.read_text() == printed.rstrip("\n") + "\n" or out_md.read_text().strip() == printed.strip()
    data = json.loads(out_json.read_text())
    kinds = {(r["path"], r["sampler"]) for r in data["rows"]}
    assert kinds == {("reference", "ddim"), ("fast", "ddim"), ("fast", "dpmsolver++")}
    for r in data["rows"]:
        assert r["seconds"] > 0 and r["views_per_s"] > 0 and r["unet_steps"] >= 1
        assert r["first_call_s"] > 0 and r["mode"] == "eager"
    fast = next(r for r in data["rows"] if r["path"] == "fast" and r["sampler"] == "ddim")
    assert fast["speedup"] > 0
    assert data["flops_per_view_step"] > 0 and data["ceiling_tflops"] > 0
    assert data["fidelity"]["max_abs_uint8"] == 0  # on CPU both paths are the same eager fp32 computation
    assert data["quality"] is None  # --no-quality; solver_agreement has its own test


def test_cli_bench_rejects_bad_input(capsys):
    from zero1to3.cli import main

    assert main(["bench", "--device", "cpu", "--views", "0"]) == 2
    assert main(["bench", "--device", "cpu", "--variants", "nonsense"]) == 2
    assert "error" in capsys.readouterr().err


def test_flop_count_positive_and_deterministic(pipe):
    a, b = count_unet_flops(pipe), count_unet_flops(pipe)
    assert a == b > 0
    single = count_unet_flops(pipe, guidance=False)
    assert a == 2 * single  # the guided step is the UNet on a batch of two


def test_fast_path_falls_back_to_eager_exactly_on_cpu(pipe):
    pipe.enable_fast_path(None)
    assert fast_mode(pipe) == "eager"
    eager = _sample(pipe, steps=2)
    for mode in ("cuda_graph", "auto"):
        pipe.enable_fast_path(mode)
        assert fast_mode(pipe) == "eager"
        np.testing.assert_array_equal(_sample(pipe, steps=2), eager)
    pipe.enable_fast_path(None)


def test_static_buffer_step_equals_guided_noise(pipe):
    """The graph body (static buffers, timestep fill, [zeros; cond] layout) run eagerly equals guided_noise."""
    from zero1to3.fast import denoise_fn

    gen = torch.Generator().manual_seed(3)
    size = pipe.unet.config.sample_size
    try:
        pipe.enable_fast_path("static")
        assert fast_mode(pipe) == "static"
        for batch, scale in ((2, 3.0), (1, 1.0), (2, 7.5)):  # a second request reuses the cached buffers
            x = pipe.image_to_tensor(synthetic_image(pipe.image_size, seed=batch)).repeat(batch, 1, 1, 1)
            cond = pipe.encode_condition(x + 0.1 * torch.randn(x.shape, generator=gen))
            poses = pipe.pose_vectors(orbit(batch))
            context = pipe.context(cond, poses)
            step = denoise_fn(pipe, cond, poses, context, scale)
            for t in (961, 1)[: 2 if batch == 2 and scale == 3.0 else 1]:
                x_t = torch.randn(batch, 4, size, size, generator=gen)
                got = step(x_t, torch.tensor(t))
                want = pipe.guided_noise(x_t, torch.tensor(t), cond, poses, scale, context=context).float()
                torch.testing.assert_close(got, want, rtol=0, atol=0)
    finally:
        pipe.enable_fast_path(None)


def test_solver_agreement_reports_psnr_ssim(pipe):
    q = solver_agreement(pipe, [synthetic_image(pipe.image_size)], orbit(1), fast_steps=1, ref_steps=2)
    assert q["images"] == 1 and len(q["psnr"]) == 1
    assert np.isfinite(q["psnr_mean"]) and 0 < q["ssim_mean"] <= 1


# ---------------------------------------------------------------------- GPU (run with -m gpu on the device)
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_graph_matches_eager(dtype):
    gpu = Zero123Pipeline.from_preset("tiny", 0, "cuda", dtype)
    gpu.enable_fast_path(None)
    eager = gpu(synthetic_image(gpu.image_size), orbit(3), num_samples=1, num_inference_steps=10, seed=1,
                preprocess=False, return_latents=True)
    for options in ({}, {"channels_last": True}, {"fuse_qkv": True}):
        gpu.enable_fast_path("cuda_graph", **options)
        assert fast_mode(gpu) == "cuda_graph"
        fast = gpu(synthetic_image(gpu.image_size), orbit(3), num_samples=1, num_inference_steps=10, seed=1,
                   preprocess=False, return_latents=True)
        fast_path = gpu._fast_denoiser
        assert fast_path._entries, "no graph was captured"
        assert all(e.graph is not None for e in fast_path._entries.values())
        assert sorted(k[1] for k in fast_path._calls) == ["decode", "encode"], "encoder/decoder not captured"
        assert all(c.graph is not None for c in fast_path._calls.values()) and not fast_path.failures
        rel = ((fast.latents - eager.latents).norm() / eager.latents.norm()).item()
        assert rel < (3e-2 if dtype == torch.bfloat16 else 1e-2), (options, rel)
    gpu.enable_fast_path(None)


@pytest.mark.gpu
@cuda
def test_cuda_graph_step_matches_eager_step_and_survives_new_requests():
    gpu = Zero123Pipeline.from_preset("tiny", 0, "cuda", torch.float16)
    gpu.enable_fast_path("cuda_graph")
    from zero1to3.fast import denoise_fn

    size = gpu.unet.config.sample_size
    for seed in (0, 1):  # second request: same batch, new conditioning -> buffers reloaded, graph reused
        gen = torch.Generator(device="cuda").manual_seed(seed)
        x = torch.randn(2, 3, gpu.image_size, gpu.image_size, device="cuda", generator=gen).clamp(-1, 1)
        cond = gpu.encode_condition(x)
        poses = gpu.pose_vectors(orbit(2))
        context = gpu.context(cond, poses)
        step = denoise_fn(gpu, cond, poses, context, 3.0)
        for t in (961, 1):
            x_t = torch.randn(2, 4, size, size, device="cuda", generator=gen)
            got = step(x_t, torch.tensor(t))
            want = gpu.guided_noise(x_t, torch.tensor(t), cond, poses, 3.0, context=context).float()
            assert torch.isfinite(got).all()
            assert ((got - want).norm() / want.norm()).item() < 5e-3
    assert len(gpu._fast_denoiser._entries) == 1


@pytest.mark.gpu
@cuda
def test_cuda_graph_recaptures_after_dtype_change():
    gpu = Zero123Pipeline.from_preset("tiny", 0, "cuda", torch.float16)
    gpu.enable_fast_path("cuda_graph")
    a = _sample(gpu, views=1, steps=4)
    gpu.to(dtype=torch.float32)
    b = _sample(gpu, views=1, steps=4)
    gpu.enable_fast_path(None)
    c = _sample(gpu, views=1, steps=4)
    assert np.abs(b.astype(int) - c.astype(int)).mean() < 0.5  # fp32 graph vs fp32 eager
    assert np.abs(a.astype(int) - c.astype(int)).mean() < 3  # fp16 graph vs fp32 eager


def test_static_codecs_and_shortcut_match_eager_pipeline(pipe):
    """The captured encoder/decoder bodies (static buffers) give the eager pipeline's images; a second request
    with another input reloads the buffers; the attention shortcut changes nothing visible."""
    image_a, image_b = synthetic_image(pipe.image_size, seed=1), synthetic_image(pipe.image_size, seed=2)
    try:
        pipe.enable_fast_path(None)
        want = [_sample_image(pipe, im) for im in (image_a, image_b)]
        pipe.enable_fast_path("static", single_token_attention=False)
        got = [_sample_image(pipe, im) for im in (image_a, image_b)]
        names = sorted(key[1] for key in pipe._fast_denoiser._calls)
        assert names == ["decode", "encode"]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        pipe.enable_fast_path("static")  # with the one-token attention shortcut (the default)
        shortcut = _sample_image(pipe, image_a)
        assert np.abs(shortcut.astype(int) - want[0].astype(int)).max() <= 1
        pipe.enable_fast_path(None)
        from zero1to3.model import uses_single_token_cross_attention
        assert not uses_single_token_cross_attention(pipe.unet)  # released with the fast path
    finally:
        pipe.enable_fast_path(None)


def _sample_image(pipe, image) -> np.ndarray:
    return pipe(image, orbit(2), num_samples=1, num_inference_steps=3, seed=0, preprocess=False).array


def test_compile_blocks_compiles_and_releases(pipe):
    """Regional compilation wraps every ResNet block and transformer, keeps the outputs, compiles once for
    every batch size with a symbolic batch (again per batch without), and can be undone."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from zero1to3.fast import REGIONAL_BLOCKS, compile_blocks, compiled_blocks

    unet = pipe.unet
    blocks = [m for m in unet.modules() if type(m).__name__ in REGIONAL_BLOCKS]
    size = unet.config.sample_size
    gen = torch.Generator().manual_seed(0)
    inputs = {b: (torch.randn(b, 8, size, size, generator=gen), torch.arange(b) * 300 + 3,
                  torch.randn(b, 1, unet.config.cross_attention_dim, generator=gen)) for b in (2, 3)}

    def run(batch: int) -> torch.Tensor:
        x, t, ctx = inputs[batch]
        return unet(x, t, encoder_hidden_states=ctx).sample

    with torch.no_grad():
        want = {b: run(b) for b in inputs}
        graphs = {}
        for dynamic_batch in (True, False):
            torch._dynamo.reset()
            counters.clear()
            try:
                assert compile_blocks(unet, backend="eager", dynamic_batch=dynamic_batch) == len(blocks) > 0
                assert compiled_blocks(unet) == len(blocks)
                got = run(2)
                first = counters["stats"]["unique_graphs"]
                got3 = run(3)
                graphs[dynamic_batch] = (first, counters["stats"]["unique_graphs"])
            finally:
                compile_blocks(unet, enable=False)
            torch.testing.assert_close(got, want[2], rtol=0, atol=1e-5)
            torch.testing.assert_close(got3, want[3], rtol=0, atol=1e-5)
    assert compiled_blocks(unet) == 0
    first, after = graphs[True]
    assert 0 < first < len(blocks) and after == first  # shared across equal blocks; no recompile for batch 3
    first, after = graphs[False]
    assert after > first  # static batch: batch 3 compiles again


def test_profile_breaks_a_call_down(pipe):
    from zero1to3.benchmarking.flops import kernel_class, profile_call

    try:
        pipe.enable_fast_path("static")
        prof = profile_call(pipe, 2, steps=3, repeats=1)
    finally:
        pipe.enable_fast_path(None)
    assert set(prof["stages_s"]) == {"encode input", "sampler", "decode + uint8"}
    assert all(v > 0 for v in prof["stages_s"].values())
    assert prof["step_gpu_ms"] > 0 and "convolution" in prof["step_ms_by_class"]
    assert abs(sum(prof["step_ms_by_class"].values()) - prof["step_gpu_ms"]) < 1e-6
    assert kernel_class("pytorch_flash::flash_fwd_kernel<...>") == "attention"
    assert kernel_class("sm90_xmma_fprop_implicit_gemm_f16f16") == "convolution"
    assert kernel_class("nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_NTN") == "matmul"
    assert kernel_class("triton_red_fused_native_group_norm_silu_3") == "inductor fused"


@pytest.mark.gpu
@cuda
def test_regional_compile_matches_eager():
    gpu = Zero123Pipeline.from_preset("tiny", 0, "cuda", torch.float16)
    gpu.enable_fast_path(None)
    eager = gpu(synthetic_image(gpu.image_size), orbit(2), num_samples=1, num_inference_steps=6, seed=1,
                preprocess=False, return_latents=True)
    gpu.enable_fast_path("compile", channels_last=True, compile_scope="blocks")
    fast = gpu(synthetic_image(gpu.image_size), orbit(2), num_samples=1, num_inference_steps=6, seed=1,
               preprocess=False, return_latents=True)
    assert fast_mode(gpu) == "compile" and not gpu._fast_denoiser.failures
    rel = ((fast.latents - eager.latents).norm() / eager.latents.norm()).item()
    assert rel < 1e-2, rel
    gpu.enable_fast_path(None)


def test_warm_up_captures_the_request_shapes_and_is_a_no_op_without_a_fast_path(pipe):
    from zero1to3.fast import warm_up

    pipe.enable_fast_path("auto")  # CPU: no fast path, nothing to prepare
    assert warm_up(pipe) == 0.0
    try:
        pipe.enable_fast_path("static")
        assert warm_up(pipe, views=(1, 3)) > 0
        fast = pipe._fast_denoiser
        assert sorted(key[0] for key in fast._entries) == [1, 3]  # guided steps for 1 and 3 views
        decoded = sorted(key[2][0][0][0] for key in fast._calls if key[1] == "decode")
        assert decoded == [1, 3]
    finally:
        pipe.enable_fast_path(None)


@pytest.mark.gpu
@cuda
def test_warm_up_captures_graphs_on_gpu():
    from zero1to3.fast import warm_up

    gpu = Zero123Pipeline.from_preset("tiny", 0, "cuda", torch.float16)
    assert warm_up(gpu) > 0  # "auto": CUDA graphs
    fast = gpu._fast_denoiser
    assert sorted(key[0] for key in fast._entries) == [1, 4] and not fast.failures
    assert all(c.graph is not None for c in fast._calls.values())
    before = len(fast._entries) + len(fast._calls)
    _sample(gpu, views=4, steps=3)  # a real request of a warmed-up size captures nothing new
    assert len(fast._entries) + len(fast._calls) == before
