"""Fast sampling on CUDA: the classifier-free-guided denoiser step replayed as one CUDA graph.

Why: at 256 px the UNet works on 32x32 latents, so at small batches a step is ~1000 small kernels whose
launch gaps cost more than their arithmetic. Capturing the whole guided step (concat, UNet on the doubled
batch, guidance combination) once per (batch, dtype, guided) and replaying it removes those gaps; the
sampler (DDIM / DPM-Solver++) stays eager and untouched, so the trajectory is the pipeline's own.

Use::

    pipe.enable_fast_path("cuda_graph")               # the default on CUDA ("auto")
    pipe.enable_fast_path("compile", channels_last=True)  # inductor kernels, then the same graph capture
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
from typing import Any, Callable, Literal

import torch

log = logging.getLogger(__name__)

FastMode = Literal["cuda_graph", "compile", "static", "auto"]
MODES: tuple[str, ...] = ("cuda_graph", "compile")
#: Denoiser callable used by the sampler loop: (x_t float32 [B,4,h,w], timestep) -> guided eps float32.
StepFn = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass(frozen=True)
class FastConfig:
    """How the fast path runs. ``mode``: "cuda_graph" (eager kernels, replayed), "compile" (torch.compile
    default mode, never max-autotune, then the same capture) or "static" (the graph body run eagerly on the
    static buffers, no capture: for tests on CPU)."""

    mode: str = "cuda_graph"
    channels_last: bool = False
    fuse_qkv: bool = False
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


class FastDenoiser:
    """Caches one captured guided step per (batch, dtype, guided) for a pipeline and hands out step functions."""

    def __init__(self, pipe, config: FastConfig) -> None:
        if config.mode not in MODES + ("static",):
            raise ValueError(f"unknown fast-path mode {config.mode!r}; expected one of {', '.join(MODES)} or None")
        self.pipe = pipe
        self.config = config
        self._entries: dict[tuple, _Entry] = {}
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
        if cfg.mode == "compile":
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = cfg.inductor_tuning
            inductor.coordinate_descent_tuning = cfg.inductor_tuning
            self._unet_fn = torch.compile(pipe.unet, dynamic=False)
        else:
            self._unet_fn = pipe.unet
        self._prepared = True

    def release(self) -> None:
        """Drop every captured graph (frees its memory pool) and undo the QKV fusion."""
        self._entries.clear()
        self._failed.clear()
        self._pool = None
        if getattr(self.pipe.unet, "_zero1to3_fused", False):
            self.pipe.unet.unfuse_qkv_projections()
            self.pipe.unet._zero1to3_fused = False

    def _current_signature(self) -> tuple:
        w = self.pipe.unet.conv_in.weight
        return (w.device, w.dtype, w.data_ptr(), w.is_contiguous(memory_format=torch.channels_last))

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
        if self.config.mode == "compile":  # one inductor compile for every batch size (graphs stay per size)
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
        try:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):  # warm-up off the capture stream: autotuning, cuDNN search, compile
                for _ in range(max(1, self.config.warmup_iters)):
                    self._run_body(e, guided)
            torch.cuda.current_stream(dev).wait_stream(side)
            torch.cuda.synchronize(dev)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                self._run_body(e, guided)
            torch.cuda.synchronize(dev)
        except Exception as exc:  # never let a capture problem break sampling: fall back to eager
            self._failed.add(key)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.failures.append(f"batch {batch}: {reason}")
            warnings.warn(f"zero1to3 fast path: {self.config.mode} capture failed for batch {batch} ({reason}); "
                          "using eager", RuntimeWarning, stacklevel=3)
            return None
        e.graph = graph
        e.capture_seconds = time.perf_counter() - start
        self.capture_seconds += e.capture_seconds
        log.info("captured guided step for batch %d (%s) in %.2f s", batch, dtype, e.capture_seconds)
        self._entries[key] = e
        return e

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
        sig = self._current_signature()
        if sig != self._signature:  # weights moved/recast since capture: graphs point at dead memory
            self._entries.clear()
            self._failed.clear()
            self._signature = None
        self._prepare()
        sig = self._current_signature()
        if sig != self._signature:
            self._entries.clear()
            self._signature = sig
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


def enable_fast_path(pipe, mode: str | None = "cuda_graph", **options: Any):
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


def denoise_fn(pipe, cond, pose_vectors: torch.Tensor, context: torch.Tensor, guidance_scale: float) -> StepFn:
    """The per-step epsilon function ``sample_latents`` calls: the captured step where active, else eager.

    "auto" (the default) turns CUDA graphs on for a CUDA pipeline in inference mode; a UNet being trained
    (train mode or trainable weights) keeps the eager path so no graph pool is held during training.
    """
    fast = getattr(pipe, "_fast_denoiser", None)
    if fast is None and getattr(pipe, "_fast_auto", True) and pipe.device.type == "cuda" \
            and not pipe.unet.training and not any(p.requires_grad for p in pipe.unet.parameters()):
        enable_fast_path(pipe, "cuda_graph")
        fast = pipe._fast_denoiser
    step = fast.denoiser(cond, context, guidance_scale) if fast is not None else None
    if step is not None:
        return step
    return lambda x, t: pipe.guided_noise(x, t, cond, pose_vectors, guidance_scale, context=context).float()


def fast_mode(pipe) -> str:
    """What the next sampler run on this pipeline will use: "eager", "cuda_graph", "compile" or "static"."""
    fast = getattr(pipe, "_fast_denoiser", None)
    if fast is None:
        auto = getattr(pipe, "_fast_auto", True) and pipe.device.type == "cuda"
        return "cuda_graph" if auto else "eager"
    return fast.config.mode if fast.active else "eager"
