"""Time PyTorch's SDPA backends on the self-attention shapes of the Zero-1-to-3 UNet at 256 px.

Why: the UNet's first level has head size 40 (320 channels, 8 heads), which every fused kernel pads; which
backend wins there decides whether forcing one is worth it. Prints one Markdown table (ms per call, CUDA
events, median of 20) for a given number of views (batch = 2 x views with guidance).

    python benchmarks/attention_backends.py --views 1 64
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

#: (tokens, channels) of the UNet's self-attention levels at a 32x32 latent, 8 heads each.
LEVELS = ((1024, 320), (256, 640), (64, 1280), (16, 1280))
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def time_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--heads", type=int, default=8)
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; ms per call, fp16, batch = 2 x views\n")
    print("| views | tokens | head size | " + " | ".join(BACKENDS) + " | default |")
    print("|---|---|---|" + "---|" * (len(BACKENDS) + 1))
    for views in args.views:
        for tokens, channels in LEVELS:
            head = channels // args.heads
            q, k, v = (torch.randn(2 * views, args.heads, tokens, head, device="cuda", dtype=torch.float16)
                       for _ in range(3))
            cells = []
            for backend in BACKENDS.values():
                try:
                    with sdpa_kernel([backend]):
                        cells.append(f"{time_ms(lambda: scaled_dot_product_attention(q, k, v)):.3f}")
                except RuntimeError:
                    cells.append("n/a")
            cells.append(f"{time_ms(lambda: scaled_dot_product_attention(q, k, v)):.3f}")
            print(f"| {views} | {tokens} | {head} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
