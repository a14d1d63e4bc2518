"""``zero1to3 demo``: the Gradio web demo (src/zero1to3/app.py) on a local port."""

from __future__ import annotations

import argparse
import time

from zero1to3.cli.common import CLIError, add_model_arguments, load_pipeline

#: Shown in the page when no trained model is installed and the demo falls back to random weights.
RANDOM_WEIGHTS_WARNING = ("No trained model is installed (the package has no embedded weights and --model was not "
                          "given), so this demo runs the tiny preset with RANDOM weights: the views it makes are "
                          "noise. Start it with `zero1to3 demo --model PATH` to use a real model.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="web demo in the browser (Gradio): views, orbit GIF and 3D mesh",
                       description="Serve the interactive demo: upload a photo, move the camera with sliders or "
                                   "presets, generate views, an orbit animation or a 3D mesh. Needs the 'demo' "
                                   "extra (pip install 'zero1to3[demo]').")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: the first free port from 7860 up)")
    p.add_argument("--share", choices=("off", "on"), default="off",
                   help="Gradio public share link (needs internet access; default off)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def load_demo_pipeline(args: argparse.Namespace):
    """The pipeline to serve and a warning for the page: random weights only when no model exists at all."""
    from zero1to3.pipeline import DEFAULT_MODEL_DIR, Zero123Pipeline

    if args.model is None and not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        pipe = Zero123Pipeline.from_preset("tiny", seed=0)
        if args.device not in (None, "cpu"):
            pipe.to(args.device)
        return pipe, "tiny preset, random weights", RANDOM_WEIGHTS_WARNING
    name = args.model or "embedded default model"
    return load_pipeline(args), name, None


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    try:
        import gradio  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as exc:
        raise CLIError(f"the demo needs gradio and plotly ({exc.name} is missing): "
                       "pip install 'zero1to3[demo]'") from None
    from zero1to3.app import DemoInfo, build_app, cleanup, launch
    from zero1to3.fast import fast_mode, warm_up

    pipe, name, warning = load_demo_pipeline(args)
    if warning:
        print(f"zero1to3 demo: warning: {warning}")
    if fast_mode(pipe) != "eager":  # capture/compile now, not in the first visitor's request
        print(f"zero1to3 demo: preparing the {fast_mode(pipe)} fast path"
              + (" (a cold compile takes 1-1.5 min)" if fast_mode(pipe) == "compile" else ""), flush=True)
        print(f"zero1to3 demo: fast path ready in {warm_up(pipe):.1f} s", flush=True)
    demo = build_app(pipe, DemoInfo(model_name=name, warning=warning))
    try:
        launch(demo, host=args.host, port=args.port or None, share=args.share == "on", block=False)
    except OSError as exc:
        raise CLIError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    print(f"zero1to3 demo: serving {name} at {demo.local_url} (ready in {time.perf_counter() - start:.1f} s; "
          "Ctrl+C stops)", flush=True)
    import signal
    import sys

    # SIGTERM (service managers, docker stop) stops like Ctrl+C: the server closes and every upload and
    # output of every session is deleted before the process exits (exit code 143 = 128 + SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        demo.block_thread()
    finally:
        cleanup(demo)
    return 0
