"""Renderer throughput: images/s for 12-view procedural objects, generation and PNG writing included.

Usage: python benchmarks/render_speed.py [--objects 20] [--resolutions 64 128 256] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--supersample", type=int, default=1)
    parser.add_argument("--no-msaa", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()

    from zero1to3.data.render import get_renderer
    from zero1to3.data.writer import render_dataset

    print(f"GL renderer: {get_renderer().gl_renderer}; cpus: {os.cpu_count()}; workers: {args.workers}; "
          f"supersample: {args.supersample}; msaa: {not args.no_msaa}")
    with tempfile.TemporaryDirectory() as tmp:
        render_dataset(os.path.join(tmp, "warmup"), 1, num_views=args.views, resolution=64, progress=False)
        for res in args.resolutions:
            rates = []
            for r in range(args.repeats):
                out = os.path.join(tmp, f"r{res}_{r}")
                start = time.perf_counter()
                summary = render_dataset(out, args.objects, num_views=args.views, resolution=res, seed=r,
                                         workers=args.workers, supersample=args.supersample,
                                         msaa=not args.no_msaa, progress=False)
                seconds = time.perf_counter() - start
                assert not summary.failed, summary.failed
                rates.append(args.objects * args.views / seconds)
            best = max(rates)
            print(f"{res:4d} px: {best:7.1f} images/s  ({best / args.views:5.2f} objects/s; "
                  f"runs: {', '.join(f'{x:.1f}' for x in rates)})")


if __name__ == "__main__":
    main()
