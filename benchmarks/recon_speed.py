"""Seconds and peak GPU memory of one image -> mesh reconstruction with the default schedule.

    python benchmarks/recon_speed.py --preset zero123 --device cuda     # official size, random weights, fp16
    python benchmarks/recon_speed.py --model path/to/model              # real weights
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zero1to3.pipeline import Zero123Pipeline
from zero1to3.recon.reconstruct import ReconConfig, reconstruct

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "zero1to3" / "assets" / "examples" / "bear.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--preset", default=None, help="random weights of this preset instead of --model")
    parser.add_argument("--image", default=str(EXAMPLE))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="default: ReconConfig's")
    args = parser.parse_args()
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    if args.preset:
        pipe = Zero123Pipeline.from_preset(args.preset).to(args.device, dtype)
    else:
        pipe = Zero123Pipeline.from_pretrained(args.model, device=args.device, dtype=dtype)
    config = ReconConfig() if args.steps is None else ReconConfig(steps=args.steps)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = reconstruct(pipe, args.image, config, progress=False)
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(json.dumps({"device": device, "seconds": round(total, 2), "peak_gib": round(peak, 2),
                      "timings": result.timings, "faces": int(len(result.mesh.faces))}, indent=1))


if __name__ == "__main__":
    main()
