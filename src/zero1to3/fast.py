"""Fast sampling on CUDA: the classifier-free-guided denoiser step replayed as one CUDA graph.

Why: at 256 px the UNet works on 32x32 latents, so at small batches a step is ~1000 small kernels whose
launch gaps cost more than their arithmetic. Capturing the whole guided step (concat, UNet on the doubled
batch, guidance combination) once per (batch, dtype, guided) and replaying it removes those gaps; the
sampler (DDIM / DPM-Solver++) stays eager and untouched, so the trajectory is the pipeline's own.

The per-request work around the sampler (CLIP + VAE encoding of the input, VAE decoding of small batches)
is captured the same way (``graph_codecs``), and the one-token cross-attention takes its exact shortcut
(``single_token_attention``, :class:`zero1to3.model.SingleTokenCrossAttention`).

Use::

    pipe.enable_fast_path("cuda_graph")               # the default on CUDA ("auto")
    pipe.enable_fast_path("compile", channels_last=True)  # regional inductor kernels, then the same capture
    pipe.enable_fast_path("compile", channels_last=True, compile_scope="unet")  # one UNet graph: longer warm-up
    pipe.enable_fast_path(None)                       # eager, the reference numerics

On CPU (or anything that is not CUDA) every mode falls back to the eager ``pipe.guided_noise`` exactly.
The captured graph reads the UNet's weights in place: in-place updates (``load_state_dict``, optimiser
steps) are seen by later replays; replacing the tensors (``pipe.to(dtype)``) invalidates the cache, which
is detected and recaptured. One sampler at a time per pipeline (the static buffers are shared).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Literal

import torch

from zero1to3.camera import RelativePose
from zero1to3.model import use_single_token_cross_attention, uses_single_token_cross_attention
from zero1to3.protocols import Condition, FastPathHost

log = logging.getLogger(__name__)

FastMode = Literal["cuda_graph", "compile", "static", "auto"]
MODES: tuple[str, ...] = ("cuda_graph", "compile")
#: Denoiser callable used by the sampler loop: (x_t float32 [B,4,h,w], timestep) -> guided eps float32.
StepFn = Callable[[torch.Tensor, Any], torch.Tensor]


#: Encoder/decoder parts the fast path can compile: VAE decoder, VAE encoder, CLIP image encoder.
CODEC_PARTS: tuple[str, ...] = ("vae.decoder", "vae.encoder", "image_encoder")


@dataclass(frozen=True)
class FastConfig:
    """How the fast path runs. ``mode``: "cuda_graph" (eager kernels, replayed), "compile" (torch.compile
    default mode, never max-autotune, then the same capture) or "static" (the graph body run eagerly on the
    static buffers, no capture: for tests on CPU)."""

    mode: str = "cuda_graph"
    channels_last: bool = False
    fuse_qkv: bool = False
    #: exact shortcut of the one-token cross-attention (no query projection, no attention kernel)
    single_token_attention: bool = True
    #: capture CLIP + VAE encoding of the input, and VAE decoding of batches up to ``codec_max_batch``
    graph_codecs: bool = True
    codec_max_batch: int = 16
    #: "compile" only: "blocks" compiles each ResNet block and transformer (regional compilation: blocks of
    #: equal shapes share a compile, the batch dimension is symbolic, so the first call compiles far less
    #: and later batch sizes not at all); "blocks-static" compiles again per batch size; "unet" compiles
    #: the whole UNet in one graph (cross-block fusion, the longest warm-up)
    compile_scope: Literal["blocks", "blocks-static", "unet"] = "blocks"
    #: "compile" only: the encoder/decoder parts whose blocks are compiled too (regionally), as module paths
    #: of the pipeline; () keeps them eager (captured in graphs all the same). On an H100 all three cost
    #: ~20 s of first-call compile and save ~6 ms per one-view call (docs/benchmarks.md).
    compile_codecs: tuple[str, ...] = CODEC_PARTS
    #: "compile" only: inductor's 1x1-convolutions-as-matmuls (fusable epilogues) and coordinate-descent
    #: kernel tuning. Longer first compile; global inductor settings, restored to defaults when off.
    inductor_tuning: bool = False
    cudnn_benchmark: bool = True
    warmup_iters: int = 2


@dataclass
class _Entry:
    """Static buffers of one captured step; the graph reads and writes only these."""

    x: torch.Tensor  # [B,4,h,w] float32 noisy latent
    t: torch.Tensor  # [1] int64 timestep
    concat: torch.Tensor  # [nB,4,h,w] unet dtype ([zeros; concat] when guided)
    ctx: torch.Tensor  # [nB,1,D] unet dtype ([zeros; context] when guided)
    scale: torch.Tensor  # [] float32 guidance scale
    out: torch.Tensor  # [B,4,h,w] float32 guided eps
    graph: Any = None  # torch.cuda.CUDAGraph, or None for "static"
    capture_seconds: float = 0.0


@dataclass
class _Captured:
    """Static inputs/outputs of one captured function call (encoder or decoder)."""

    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    graph: Any = None


class FastDenoiser:
    """Caches one captured guided step per (batch, dtype, guided) for a pipeline and hands out step functions."""

    def __init__(self, pipe: FastPathHost, config: FastConfig) -> None:
        if config.mode not in MODES + ("static",):
            raise ValueError(f"unknown fast-path mode {config.mode!r}; expected one of {', '.join(MODES)} or None")
        self.pipe = pipe
        self.config = config
        self._entries: dict[tuple, _Entry] = {}
        self._calls: dict[tuple, _Captured] = {}
        self._failed: set[tuple] = set()
        self.failures: list[str] = []  # one line per failed capture (the bench reports them)
        self._signature: tuple | None = None
        self._pool = None
        self._unet_fn: Callable | None = None
        self._prepared = False
        self.capture_seconds = 0.0  # total spent capturing/compiling so far (bench reports it)

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        """Graph capture needs CUDA; "static" runs anywhere (tests)."""
        return self.config.mode == "static" or self.pipe.device.type == "cuda"

    def _prepare(self) -> None:
        """Apply the layout/attention options once (they change the shared modules, eager calls included)."""
        if self._prepared:
            return
        pipe, cfg = self.pipe, self.config
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if pipe.device.type == "cuda":
            pipe.unet.to(memory_format=fmt)
            pipe.vae.to(memory_format=fmt)
            if cfg.cudnn_benchmark:
                torch.backends.cudnn.benchmark = True  # per-shape conv algorithm search, done during warm-up
        if cfg.fuse_qkv and not getattr(pipe.unet, "_zero1to3_fused", False):
            pipe.unet.fuse_qkv_projections()
            pipe.unet._zero1to3_fused = True
        elif not cfg.fuse_qkv and getattr(pipe.unet, "_zero1to3_fused", False):
            pipe.unet.unfuse_qkv_projections()
            pipe.unet._zero1to3_fused = False
        # after the fusion: unfusing restores the processors that were set before it
        if uses_single_token_cross_attention(pipe.unet) != cfg.single_token_attention:
            use_single_token_cross_attention(pipe.unet, cfg.single_token_attention)
        self._unet_fn = pipe.unet
        if cfg.mode == "compile":
            import torch._inductor.config as inductor  # lazy: inductor loads only when compiling

            inductor.conv_1x1_as_mm = cfg.inductor_tuning
            inductor.coordinate_descent_tuning = cfg.inductor_tuning
            if cfg.compile_scope == "unet":
                self._unet_fn = torch.compile(pipe.unet, dynamic=False)
            else:
                compile_blocks(pipe.unet, dynamic_batch=cfg.compile_scope == "blocks")
            for part in cfg.compile_codecs:
                if part not in CODEC_PARTS:
                    raise ValueError(f"unknown codec part {part!r}; expected some of {', '.join(CODEC_PARTS)}")
                compile_blocks(attrgetter(part)(pipe), dynamic_batch=cfg.compile_scope != "blocks-static")
        self._prepared = True

    def release(self) -> None:
        """Drop every captured graph (frees its memory pool) and undo the UNet changes (fusion, shortcut)."""
        self._entries.clear()
        self._calls.clear()
        self._failed.clear()
        self._pool = None
        unet = self.pipe.unet
        if getattr(unet, "_zero1to3_fused", False):
            unet.unfuse_qkv_projections()
            unet._zero1to3_fused = False
        if self._prepared and self.config.single_token_attention:
            use_single_token_cross_attention(unet, False)
        if self._prepared and self.config.mode == "compile":
            for part in (unet, self.pipe.vae, self.pipe.image_encoder):
                compile_blocks(part, enable=False)
        self._prepared = False

    def _current_signature(self) -> tuple:
        w = self.pipe.unet.conv_in.weight
        return (w.device, w.dtype, w.data_ptr(), w.is_contiguous(memory_format=torch.channels_last))

    def _refresh(self) -> None:
        """Prepare once; drop every graph if the weights moved or were recast since capture (a graph reads
        the tensors it was captured with, which would then be dead memory)."""
        self._prepare()
        sig = self._current_signature()
        if sig != self._signature:
            self._entries.clear()
            self._calls.clear()
            self._failed.clear()
            self._signature = sig

    # ------------------------------------------------------------------ graph
    def _run_body(self, e: _Entry, guided: bool) -> None:
        """The guided step on static buffers, the same arithmetic as ``Zero123Pipeline.guided_noise``."""
        dtype = e.concat.dtype
        x = e.x.to(dtype)
        x_in = torch.cat([x, x]) if guided else x
        sample = torch.cat([x_in, e.concat], dim=1)
        if self.config.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        n = sample.shape[0]
        t = e.t.expand(n)
        if self._unet_fn is not self.pipe.unet:  # whole-UNet compile: one for every batch (graphs stay per size)
            for tensor in (sample, t, e.ctx):
                torch._dynamo.mark_dynamic(tensor, 0)
        eps = self._unet_fn(sample, t, encoder_hidden_states=e.ctx).sample
        if guided:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + e.scale.to(dtype) * (eps_c - eps_u)
        e.out.copy_(eps)

    def _entry(self, key: tuple, cond, context: torch.Tensor, guided: bool) -> _Entry | None:
        if key in self._entries:
            return self._entries[key]
        if key in self._failed:
            return None
        pipe = self.pipe
        batch, dtype = key[0], key[1]
        dev = pipe.device
        size = pipe.unet.config.sample_size
        n = 2 * batch if guided else batch
        e = _Entry(x=torch.randn(batch, 4, size, size, device=dev),
                   t=torch.full((1,), 500, device=dev, dtype=torch.long),
                   concat=torch.zeros(n, *cond.concat_latent.shape[1:], device=dev, dtype=dtype),
                   ctx=torch.zeros(n, *context.shape[1:], device=dev, dtype=dtype),
                   scale=torch.tensor(3.0, device=dev), out=torch.zeros(batch, 4, size, size, device=dev))
        self._load(e, cond, context, 3.0, guided)
        if self.config.mode == "static":
            self._entries[key] = e
            return e
        start = time.perf_counter()
        graph = self._capture(lambda: self._run_body(e, guided), key, f"guided step, batch {batch}")
        if graph is None:
            return None
        e.graph = graph
        e.capture_seconds = time.perf_counter() - start
        log.info("captured guided step for batch %d (%s) in %.2f s", batch, dtype, e.capture_seconds)
        self._entries[key] = e
        return e

    def _capture(self, body: Callable[[], Any], key: tuple, label: str):
        """Warm ``body`` up on a side stream (compile, cuDNN search, autotuning) and capture it into a graph
        sharing this denoiser's memory pool; None (and a warning, once per key) if capture fails."""
        dev = self.pipe.device
        start = time.perf_counter()
        try:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(max(1, self.config.warmup_iters)):
                    body()
            torch.cuda.current_stream(dev).wait_stream(side)
            torch.cuda.synchronize(dev)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                body()
            torch.cuda.synchronize(dev)
        except Exception as exc:  # never let a capture problem break sampling: fall back to eager
            self._failed.add(key)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.failures.append(f"{label}: {reason}")
            warnings.warn(f"zero1to3 fast path: {self.config.mode} capture failed for {label} ({reason}); "
                          "using eager", RuntimeWarning, stacklevel=4)
            return None
        self.capture_seconds += time.perf_counter() - start
        return graph

    def call(self, name: str, fn: Callable[..., tuple[torch.Tensor, ...]],
             *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``fn(*inputs)`` (a tuple of tensors) through a graph captured per (name, input shapes, dtypes).

        Used for the encoders and the decoder, whose eager launch gaps cost several ms per request at small
        batches; outputs are fresh tensors (callers may keep them).
        """
        if not self.active or not self.config.graph_codecs:
            return fn(*inputs)
        self._refresh()
        sig = tuple((tuple(x.shape), x.dtype) for x in inputs)
        key = ("call", name, sig)
        if key in self._failed:
            return fn(*inputs)
        c = self._calls.get(key)
        if c is None:
            static = tuple(x.clone() for x in inputs)
            c = _Captured(inputs=static, outputs=())
            if self.config.mode != "static":
                def body() -> None:
                    c.outputs = fn(*static)

                c.graph = self._capture(body, key, f"{name} {list(sig[0][0])}")
                if c.graph is None:
                    return fn(*inputs)
            self._calls[key] = c
        for buffer, x in zip(c.inputs, inputs):
            buffer.copy_(x)
        if c.graph is not None:
            c.graph.replay()
        else:
            c.outputs = fn(*c.inputs)
        return tuple(y.clone() for y in c.outputs)

    @staticmethod
    def _load(e: _Entry, cond, context: torch.Tensor, guidance_scale: float, guided: bool) -> None:
        """Copy one request's conditioning into the static buffers (once per sampler run, not per step)."""
        b = context.shape[0]
        if guided:
            e.concat[:b].zero_()
            e.concat[b:].copy_(cond.concat_latent)
            e.ctx[:b].zero_()
            e.ctx[b:].copy_(context)
        else:
            e.concat.copy_(cond.concat_latent)
            e.ctx.copy_(context)
        e.scale.fill_(float(guidance_scale))

    def denoiser(self, cond, context: torch.Tensor, guidance_scale: float) -> StepFn | None:
        """A step function for this request, or None where the eager path must be used."""
        if not self.active:
            return None
        self._refresh()
        guided = guidance_scale != 1.0
        batch = context.shape[0]
        key = (batch, self.pipe.dtype, guided, tuple(cond.concat_latent.shape[1:]), tuple(context.shape[1:]))
        e = self._entry(key, cond, context, guided)
        if e is None:
            return None
        self._load(e, cond, context, guidance_scale, guided)

        def step(x: torch.Tensor, t: Any) -> torch.Tensor:
            e.x.copy_(x)
            e.t.fill_(int(t))  # a fill kernel, not a host->device copy: no sync per step
            if e.graph is not None:
                e.graph.replay()
            else:
                self._run_body(e, guided)
            return e.out.clone()  # callers (DPM++ history, callbacks) may keep it past the next replay

        return step


def enable_fast_path(pipe: FastPathHost, mode: str | None = "cuda_graph", **options: Any):
    """Set the pipeline's fast path (see module doc); ``mode=None`` restores pure eager sampling."""
    old = getattr(pipe, "_fast_denoiser", None)
    if old is not None:
        old.release()
    if mode == "auto":
        pipe._fast_denoiser, pipe._fast_auto = None, True
        return pipe
    pipe._fast_auto = False
    pipe._fast_denoiser = FastDenoiser(pipe, FastConfig(mode=mode, **options)) if mode else None
    return pipe


def _fast(pipe: FastPathHost) -> FastDenoiser | None:
    """The pipeline's fast path, created on first use under "auto" (the default): CUDA graphs for a CUDA
    pipeline in inference mode; a UNet being trained (train mode or trainable weights) keeps the eager path
    so no graph pool is held during training."""
    fast = getattr(pipe, "_fast_denoiser", None)
    if fast is None and getattr(pipe, "_fast_auto", True) and pipe.device.type == "cuda" \
            and not pipe.unet.training and not any(p.requires_grad for p in pipe.unet.parameters()):
        enable_fast_path(pipe, "cuda_graph")
        fast = pipe._fast_denoiser
    return fast


def encode_condition(pipe: FastPathHost, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP context embedding, concat latent) of [B,3,H,W] input images, captured where the fast path is on."""
    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond = pipe.encode_condition(x)
        return cond.clip_embedding, cond.concat_latent

    fast = _fast(pipe)
    return fast.call("encode", encode, images) if fast is not None else encode(images)


def decode_latents(pipe: FastPathHost, latents: torch.Tensor) -> torch.Tensor:
    """VAE decoding of scaled latents, captured for batches up to ``codec_max_batch`` (larger batches keep
    the GPU busy without it, and a graph would pin their activation memory)."""
    fast = _fast(pipe)
    if fast is None or latents.shape[0] > fast.config.codec_max_batch:
        return pipe.decode_latents(latents)
    return fast.call("decode", lambda z: (pipe.decode_latents(z),), latents)[0]


def warm_up(pipe: FastPathHost, views: tuple[int, ...] = (1, 4)) -> float:
    """Capture (and compile) the fast path before the first request, e.g. when a server starts; returns the
    seconds it took (0 where there is no fast path: CPU, eager).

    Why these sizes: one view compiles every block (the batch is symbolic afterwards); the VAE decoder sees
    a batch of 1 first, which dynamo specialises, so a second size makes its general version too.
    """
    fast = _fast(pipe)
    if fast is None or not fast.active:
        return 0.0

    start = time.perf_counter()
    size = pipe.image_size
    blank = torch.zeros(1, 3, size, size, device=pipe.device, dtype=pipe.dtype)
    for n in views:
        pipe(blank, [RelativePose(0.0, 0.0, 0.0)] * n, num_samples=1, num_inference_steps=2, seed=0)
    return time.perf_counter() - start


def compile_blocks(module: torch.nn.Module, enable: bool = True, backend: str = "inductor",
                   dynamic_batch: bool = True) -> int:
    """Regional compilation: torch.compile every ResNet block, transformer and CLIP layer inside ``module`` in
    place (or, with ``enable=False``, return them to eager). Returns the number of blocks changed.

    Why: dynamo caches compiled code per code object, so blocks of equal shapes share one compile; the
    UNet has ~20 distinct block shapes, so a cold start compiles much less than the whole-UNet graph. With
    ``dynamic_batch`` the batch dimension of each block's inputs is symbolic, so one compile per block
    shape serves every batch size (channels and sizes stay specialised: fully dynamic shapes ran 6-15%
    slower on an H100); otherwise each batch size compiles again.
    """
    import torch._dynamo.config as dynamo  # lazy: dynamo loads only when compiling

    dynamo.recompile_limit = max(dynamo.recompile_limit, 256)  # UNet and VAE ResNet blocks share one code object
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 1024)
    count = 0
    for block in module.modules():
        if type(block).__name__ not in REGIONAL_BLOCKS:
            continue
        if enable:
            block.forward = _compiled_forward(block, backend, dynamic_batch)
        elif "forward" in vars(block):
            del block.forward  # back to the class's forward
        count += 1
    return count


def _compiled_forward(block: torch.nn.Module, backend: str, dynamic_batch: bool) -> Callable:
    compiled = torch.compile(type(block).forward, dynamic=False, backend=backend)

    def forward(*args: Any, **kwargs: Any) -> Any:
        if dynamic_batch:
            for x in (*args, *kwargs.values()):
                if torch.is_tensor(x) and x.dim() > 0:
                    torch._dynamo.maybe_mark_dynamic(x, 0)
        return compiled(block, *args, **kwargs)

    forward.zero1to3_compiled = True
    return forward


def compiled_blocks(module: torch.nn.Module) -> int:
    return sum(getattr(vars(b).get("forward"), "zero1to3_compiled", False) for b in module.modules())


#: Classes compiled one by one under ``compile_scope="blocks"`` (diffusers UNet/VAE, transformers CLIP).
REGIONAL_BLOCKS = ("ResnetBlock2D", "Transformer2DModel", "CLIPEncoderLayer")


def denoise_fn(pipe: FastPathHost, cond: Condition, pose_vectors: torch.Tensor, context: torch.Tensor,
               guidance_scale: float) -> StepFn:
    """The per-step epsilon function ``sample_latents`` calls: the captured step where active, else eager."""
    fast = _fast(pipe)
    step = fast.denoiser(cond, context, guidance_scale) if fast is not None else None
    if step is not None:
        return step
    return lambda x, t: pipe.guided_noise(x, t, cond, pose_vectors, guidance_scale, context=context).float()


def fast_mode(pipe: FastPathHost) -> str:
    """What the next sampler run on this pipeline will use: "eager", "cuda_graph", "compile" or "static"."""
    fast = getattr(pipe, "_fast_denoiser", None)
    if fast is None:
        auto = getattr(pipe, "_fast_auto", True) and pipe.device.type == "cuda"
        return "cuda_graph" if auto else "eager"
    return fast.config.mode if fast.active else "eager"
