"""What ``zero1to3 bench`` measures: :class:`BenchConfig` (its fields are the command's flags) and the
ablation variants. Torch-free, so ``zero1to3 bench --help`` does not load torch."""

from __future__ import annotations

from dataclasses import dataclass

from zero1to3.settings import option


@dataclass
class BenchConfig:
    """What to measure (``zero1to3 bench`` flags are these fields)."""

    device: str | None = option(None, "cuda, cuda:1, cpu (None: cuda if available)")
    model: str | None = option(None, "diffusers-layout folder or original .ckpt to time (None: random weights "
                                     "of --preset)")
    image_encoder: str | None = option(None, "local CLIP vision folder (needed with a .ckpt)")
    preset_name: str | None = option(None, "random-weights size (None: zero123 on CUDA, tiny on CPU)",
                                     flag="--preset", choices=("zero123", "tiny"))
    dtype: str = option("fp16", "fast-path precision on CUDA (CPU always runs fp32)", choices=("fp16", "bf16", "fp32"))
    fast_mode: str = option("cuda_graph", "fast path of the main table", choices=("cuda_graph", "compile", "eager"))
    channels_last: bool = option(False, "channels_last UNet/VAE in the main table")
    fuse_qkv: bool = option(False, "fused QKV projections in the main table")
    inductor_tuning: bool = option(False, "with --fast-mode compile: 1x1 convs as matmuls + coordinate-descent "
                                          "kernel tuning")
    compile_scope: str = option("blocks", "with --fast-mode compile: each block, one compile for all batch sizes; "
                                          "each block per batch size; or the whole UNet (longest warm-up)",
                                choices=("blocks", "blocks-static", "unet"))
    compile_codecs: tuple[str, ...] | None = option(None, "with --fast-mode compile: encoder/decoder parts compiled "
                                                          "too (None: all three; none given: eager, captured)",
                                                    choices=("vae.decoder", "vae.encoder", "image_encoder"))
    views: tuple[int, ...] = option((1, 4, 16, 64), "views per call")
    steps: int = option(50, "DDIM steps")
    solver_steps: int = option(20, "DPM-Solver++ steps")
    include_reference: bool = option(False, "also time the reference-like path (fp32, eager, DDIM) for speed-ups")
    reference_views: tuple[int, ...] | None = option(None, "views at which the slow reference runs (None: those "
                                                           "of --views <= 4)")
    repeats: int = option(3, "timed calls per row after the first (median)")
    reference_repeats: int = option(2, "timed calls per reference row after the first")
    guidance_scale: float = option(3.0, "classifier-free guidance scale", flag="--guidance")
    quality: bool = option(True, "check DPM-Solver++ against DDIM (PSNR/SSIM from the same noise)")
    quality_views: int = option(4, "views of the quality check")
    variants: tuple[str, ...] | None = option(None, "ablations at the smallest and largest --views (None: "
                                                    "DEFAULT_GPU_VARIANTS on CUDA, none on CPU)")
    time_budget_s: float = option(480.0, "seconds; parts that would not fit are skipped and listed",
                                  flag="--time-budget")
    threads: int | None = option(None, "CPU threads (None: $OMP_NUM_THREADS, else the fastest for the model's "
                                       "size: 1 for small models)")
    seed: int = option(0, "seed of inputs and noise")
    profile_views: tuple[int, ...] = option((), "also break one call down (stages, kernel classes of a UNet step) "
                                                "at these views")

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch  # here, so that building the CLI flags from this class stays torch-free

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_variants(self) -> tuple[str, ...]:
        if self.variants is not None:
            return tuple(self.variants)
        return DEFAULT_GPU_VARIANTS if self.resolved_device().startswith("cuda") else ()

    @property
    def fast_path(self) -> str | None:
        """The mode given to ``enable_fast_path`` (None: eager)."""
        return None if self.fast_mode == "eager" else self.fast_mode


PLAIN = {"single_token_attention": False, "graph_codecs": False}

#: Ablations: name -> (fast_mode, FastConfig options, dtype, rough seconds one row needs (compile: per shape)).
VARIANTS: dict[str, tuple[str | None, dict[str, bool], str, float]] = {
    "eager-fp16": (None, {}, "fp16", 30.0),
    "graph": ("cuda_graph", {}, "fp16", 20.0),
    "graph+cl": ("cuda_graph", {"channels_last": True}, "fp16", 20.0),
    "graph+qkv": ("cuda_graph", {"fuse_qkv": True}, "fp16", 20.0),
    "graph+cl+qkv": ("cuda_graph", {"channels_last": True, "fuse_qkv": True}, "fp16", 20.0),
    "graph-bf16": ("cuda_graph", {}, "bf16", 20.0),
    "compile": ("compile", {}, "fp16", 150.0),
    "compile+cl": ("compile", {"channels_last": True}, "fp16", 150.0),
    "compile+cl+qkv": ("compile", {"channels_last": True, "fuse_qkv": True}, "fp16", 150.0),
    "compile+cl+tune": ("compile", {"channels_last": True, "inductor_tuning": True}, "fp16", 150.0),
    "compile+cl+unet": ("compile", {"channels_last": True, "compile_scope": "unet"}, "fp16", 150.0),
    "compile+cl+blocks-static": ("compile", {"channels_last": True, "compile_scope": "blocks-static"}, "fp16", 100.0),
    # without the one-token attention shortcut and the captured encoders/decoder (the earlier fast path)
    "graph+cl-plain": ("cuda_graph", {"channels_last": True, **PLAIN}, "fp16", 20.0),
    "compile+cl-plain": ("compile", {"channels_last": True, **PLAIN}, "fp16", 150.0),
}

DEFAULT_GPU_VARIANTS = ("graph+cl", "graph+cl-plain", "compile+cl", "compile+cl+unet")
