"""Speed benchmarks of the sampling pipeline (``zero1to3 bench``): a tool beside the library, not part of it.

* :mod:`~zero1to3.benchmarking.timing`: the harness: synthetic input, synchronised timing of whole calls, rows.
* :mod:`~zero1to3.benchmarking.flops`: what the hardware could do: UNet FLOPs per step, a measured matmul
  ceiling, and a per-call profile (stages, kernel classes).
* :mod:`~zero1to3.benchmarking.quality`: whether a faster setting changes the images (PSNR/SSIM).
* :mod:`~zero1to3.benchmarking.config`: what to measure (:class:`BenchConfig`, ablation variants; torch-free).
* :mod:`~zero1to3.benchmarking.sampling`: the benchmark itself (:func:`run_benchmark`).
* :mod:`~zero1to3.benchmarking.report`: the result as JSON and Markdown, with issue 4's targets.
"""
