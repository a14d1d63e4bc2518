"""Gradio web demo: one photo -> new views at any camera, an orbit GIF, and a 3D mesh.

Pure helpers (presets, camera geometry and its plotly figure, job cancellation, sampling with a
per-step hook) live at module level so they can be unit-tested without a browser; :func:`build_app`
wires them into a ``gr.Blocks`` page and :func:`launch` serves it. Gradio and plotly are imported
lazily: ``import zero1to3.app`` stays cheap and the CLI can say which extra is missing.
"""

import atexit
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from PIL import Image

from zero1to3.camera import REFERENCE_FOV_DEG, RelativePose, camera_position, look_at, orbit, spherical_to_cartesian
from zero1to3.inputs import MAX_SEED, InputRangeError, check_range
from zero1to3.pipeline import denoiser_steps
from zero1to3.preprocess import DEFAULT_FOREGROUND_RATIO, ImageInputError, PreprocessConfig, preprocess_image

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr
    import plotly.graph_objects as go

    from zero1to3.pipeline import Zero123Pipeline

#: Bundled example inputs (CC0, rendered by the project; see assets/examples/LICENSE).
EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
#: Slider ranges, in the units of :meth:`RelativePose.from_degrees` (degrees, degrees, world units).
POLAR_RANGE = (-90.0, 90.0)
AZIMUTH_RANGE = (-180.0, 180.0)
RADIUS_RANGE = (-0.5, 0.5)
#: Preset camera changes (polar, azimuth, radius). +azimuth turns the camera to its right, +polar moves it down.
PRESETS: dict[str, tuple[float, float, float]] = {
    "left": (0.0, -90.0, 0.0),
    "right": (0.0, 90.0, 0.0),
    "above": (-90.0, 0.0, 0.0),
    "below": (90.0, 0.0, 0.0),
    "behind": (0.0, 180.0, 0.0),
}
PRESET_NAMES = (*PRESETS, "random")
#: Distance of the input camera in the 3D view (middle of the training renders' 1.5-2.2 range).
BASE_RADIUS = 1.9
#: Generated images smaller than this are enlarged (Lanczos) for display only.
DISPLAY_SIZE = 256
MAX_SAMPLES = 8
ORBIT_VIEWS = 8
SCHEDULER_CHOICES = ("ddim", "dpmsolver++")
#: Largest upload the server accepts (Gradio refuses bigger files before they reach a handler).
MAX_UPLOAD = "20mb"
#: Requests of each kind served at once; the rest wait in the queue (bounded memory under load).
PREVIEW_CONCURRENCY = 2
LIGHT_CONCURRENCY = 4
#: Requests the queue holds; beyond it the page says the server is busy.
QUEUE_SIZE = 64
MAX_STEPS = 200
MAX_RECON_STEPS = 1000


class JobCancelled(Exception):
    """Raised inside a running job when its session pressed Stop."""


def page_message(exc: BaseException) -> str:
    """What the page says about a failed request: our own one-line wording, without server paths or the
    text of an unexpected exception (that goes to the server log)."""
    import logging
    import re

    if isinstance(exc, (ImageInputError, InputRangeError)):
        text = (str(exc).strip().splitlines() or ["the image cannot be used"])[0]
        if text.startswith("cannot read image"):
            text = re.sub(r"\s*\([^()]*\)$", "", text)  # the decoder's own words stay in the log
        text = re.sub(r"(?:[A-Za-z]:)?(?:[/\\][^\s/\\:;,]+)+[/\\]([^\s/\\:;,]+)", r"\1", text)  # paths -> names
        return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    logging.getLogger(__name__).exception("demo request failed")
    return "Something went wrong on the server while handling this request; please try again."


# ----------------------------------------------------------------------------------------------- presets
def preset_pose(name: str, rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Slider values of a preset button; ``random`` draws uniformly within the slider ranges."""
    key = name.strip().lower()
    if key == "random":
        rng = rng if rng is not None else np.random.default_rng()
        return (float(round(rng.uniform(*POLAR_RANGE))), float(round(rng.uniform(*AZIMUTH_RANGE))),
                float(round(rng.uniform(*RADIUS_RANGE), 2)))
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    return PRESETS[key]


def clamp_pose(polar: float, azimuth: float, radius: float) -> tuple[float, float, float]:
    """Slider values brought into range (a typed-in number can exceed the slider); NaN is an error."""
    values = []
    for name, value, (lo, hi) in (("polar", polar, POLAR_RANGE), ("azimuth", azimuth, AZIMUTH_RANGE),
                                  ("radius", radius, RADIUS_RANGE)):
        value = float(value)
        if not math.isfinite(value):
            raise InputRangeError(f"{name} must be a finite number, got {value}")
        values.append(min(max(value, lo), hi))
    return values[0], values[1], values[2]


def example_images() -> list[Path]:
    """The bundled example images, sorted by name."""
    return sorted(EXAMPLES_DIR.glob("*.png"))


# ----------------------------------------------------------------------------------------------- geometry
def camera_centers(polar: float, azimuth: float, radius: float, input_elevation: float = 0.0,
                   base_radius: float = BASE_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """World positions of the input camera (azimuth 0) and of the target after the slider change.

    Polar is measured from +Z, so the input sits at polar 90 - elevation and a positive polar change moves
    the target down; the target's polar is clipped to [0, 180] degrees (past a pole it would flip).
    """
    polar, azimuth, radius = clamp_pose(polar, azimuth, radius)
    input_polar = 90.0 - input_elevation
    target_polar = min(max(input_polar + polar, 0.0), 180.0)
    inp = camera_position(input_elevation, 0.0, base_radius)
    tgt = camera_position(90.0 - target_polar, azimuth, base_radius + radius)
    return np.asarray(inp), np.asarray(tgt)


def frustum_segments(position: np.ndarray, scale: float = 0.45,
                     fov_deg: float = REFERENCE_FOV_DEG) -> np.ndarray:
    """Line segments [S, 2, 3] of a camera frustum looking at the origin (+Z up), plus an up tick."""
    rt = look_at(position)
    right, up, back = rt[0, :3], rt[1, :3], rt[2, :3]
    half = math.tan(math.radians(fov_deg) / 2.0)
    centre = np.asarray(position, np.float64)
    corners = [centre + scale * (-back + half * (sx * right + sy * up))
               for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    segments = [(centre, c) for c in corners]
    segments += [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    top = centre + scale * (-back + half * 1.6 * up)  # a tick above the image: which way is up
    segments += [(corners[2], top), (top, corners[3])]
    return np.asarray(segments)


def _lines(segments: np.ndarray) -> tuple[list[float | None], list[float | None], list[float | None]]:
    xs: list[float | None] = []
    ys: list[float | None] = []
    zs: list[float | None] = []
    for a, b in segments:
        xs += [float(a[0]), float(b[0]), None]
        ys += [float(a[1]), float(b[1]), None]
        zs += [float(a[2]), float(b[2]), None]
    return xs, ys, zs


def _box_mesh(half: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return corners, faces


def camera_figure(polar: float, azimuth: float, radius: float, input_elevation: float = 0.0) -> "go.Figure":
    """Interactive 3D view: the object's unit box, the input camera (blue) and the target camera (red).

    ``uirevision`` keeps the user's own rotation of the view when the sliders redraw it.
    """
    import plotly.graph_objects as go

    inp, tgt = camera_centers(polar, azimuth, radius, input_elevation)
    corners, faces = _box_mesh()
    fig = go.Figure()
    fig.add_trace(go.Mesh3d(x=corners[:, 0], y=corners[:, 1], z=corners[:, 2], i=faces[:, 0], j=faces[:, 1],
                            k=faces[:, 2], color="#b0b0b0", opacity=0.55, name="object", hoverinfo="name",
                            flatshading=True))
    for label, pos, colour in (("input", inp, "#1f77b4"), ("target", tgt, "#d62728")):
        xs, ys, zs = _lines(frustum_segments(pos))
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line=dict(color=colour, width=5),
                                   name=f"{label} camera", hoverinfo="name"))
        fig.add_trace(go.Scatter3d(x=[pos[0]], y=[pos[1]], z=[pos[2]], mode="markers+text", text=[label],
                                   textposition="top center", marker=dict(size=4, color=colour),
                                   showlegend=False, hoverinfo="text"))
    # The path the camera travels: azimuth first (on the input's circle), then polar, then radius.
    steps = np.linspace(0.0, 1.0, 32)
    in_polar = 90.0 - input_elevation
    p, a, r = clamp_pose(polar, azimuth, radius)
    path = np.array([spherical_to_cartesian(math.radians(min(max(in_polar + s * p, 0.0), 180.0)),
                                            math.radians(s * a), BASE_RADIUS + s * r) for s in steps])
    fig.add_trace(go.Scatter3d(x=path[:, 0], y=path[:, 1], z=path[:, 2], mode="lines",
                               line=dict(color="#d62728", width=2, dash="dash"), name="camera move",
                               hoverinfo="name"))
    span = [-2.5, 2.5]
    fig.update_layout(
        scene=dict(xaxis=dict(range=span, title="x"), yaxis=dict(range=span, title="y"),
                   zaxis=dict(range=span, title="z (up)"), aspectmode="cube",
                   camera=dict(eye=dict(x=1.0, y=-0.85, z=0.55))),
        margin=dict(l=0, r=0, t=28, b=0), height=400, uirevision="keep",
        legend=dict(orientation="h", y=1.02, x=0.0), title=dict(
            text=f"polar {p:+.0f}°, azimuth {a:+.0f}°, radius {r:+.2f}", x=0.5, font=dict(size=13)))
    return fig


# ----------------------------------------------------------------------------------------------- jobs
class JobRegistry:
    """One cancel flag per browser session, so Stop reaches the job that session started."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._flags[session] = threading.Event()
        return flag

    def cancel(self, session: str) -> bool:
        """Flag the session's running job; False if it has none."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None or flag.is_set():
            return False
        flag.set()
        return True

    def finish(self, session: str, flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]


def _check(flag: threading.Event | None) -> None:
    if flag is not None and flag.is_set():
        raise JobCancelled("job cancelled")


# ----------------------------------------------------------------------------------------------- model work
def preprocess_preview(image: Any, foreground_ratio: float = DEFAULT_FOREGROUND_RATIO,
                       size: int = DISPLAY_SIZE, model_size: int | None = None) -> Image.Image:
    """What the model will see: the object cropped, scaled to ``foreground_ratio`` and put on white.

    With ``model_size`` the image is made at the model's resolution and enlarged to ``size`` with square
    pixels, so the page shows the detail the model really gets. Raises :class:`ImageInputError` for an
    unreadable image or one with no object.
    """
    if image is None:
        raise ImageInputError("no image: upload one or pick an example")
    made = preprocess_image(image, PreprocessConfig(size=model_size or size, foreground_ratio=float(foreground_ratio)))
    if made.width < size:
        made = made.resize((size, size), Image.Resampling.NEAREST)
    return made


def per_sample_latents(pipe: "Zero123Pipeline", seed: int, num_samples: int, num_poses: int = 1):
    """Starting noise where sample i comes from seed + i (the same for every pose).

    DDIM at eta 0 and DPM-Solver++ draw no other noise, so a sample shown as "seed s" is reproduced by
    asking for one sample with seed s.
    """
    import torch

    size = pipe.unet.config.sample_size
    noise = [torch.randn((1, 4, size, size), generator=torch.Generator().manual_seed(int(seed) + i),
                         dtype=torch.float32) for i in range(num_samples)]
    return torch.cat(noise * num_poses)


def sample_views(pipe: "Zero123Pipeline", image: Any, poses: Sequence[RelativePose], *, num_samples: int = 4,
                 guidance_scale: float = 3.0, num_inference_steps: int = 50, scheduler: str = "ddim",
                 seed: int = 0, foreground_ratio: float | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``pipe(image, poses, ...)`` as uint8 [P, S, H, W, 3], sample i from seed + i, with a per-step hook.

    The hook reports progress and may raise (e.g. :class:`JobCancelled`) to stop a job mid-sampling.
    """
    total = denoiser_steps(num_inference_steps, scheduler)
    callback = (lambda i, t, x, eps: on_step(i + 1, total)) if on_step is not None else None
    out = pipe(image, list(poses), num_samples=num_samples, guidance_scale=guidance_scale,
               num_inference_steps=num_inference_steps, scheduler=scheduler, eta=0.0, seed=int(seed),
               foreground_ratio=foreground_ratio, callback=callback,
               latents=per_sample_latents(pipe, seed, num_samples, len(poses)))
    return out.array


def for_display(array: np.ndarray, size: int = DISPLAY_SIZE) -> Image.Image:
    """uint8 HxWx3 -> PIL, enlarged to ``size`` if smaller (the tiny model makes 64 px views)."""
    img = Image.fromarray(array)
    if img.width < size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def orbit_poses(polar: float, radius: float, views: int = ORBIT_VIEWS) -> list[RelativePose]:
    """A full turn in azimuth at the current (clamped) polar and radius change: a turntable of the object."""
    polar, _, radius = clamp_pose(polar, 0.0, radius)
    return orbit(views, elevation_deg=-polar, d_radius=radius)  # d_polar = input elevation (0) - elevation


def write_gif(frames: Sequence[np.ndarray], path: Path, fps: float = 4.0) -> Path:
    from zero1to3.media import save_animation

    return save_animation(path, [np.asarray(for_display(f)) for f in frames], fps)


#: 3D quality presets: ReconConfig overrides. "fast" keeps a CPU run to a few minutes (coarse grid,
#: small renders, 2 views per step); "full" is the documented recipe (docs/recon.md), meant for a GPU.
def _preset(name: str) -> dict[str, Any]:
    from zero1to3.recon.config import RECON_PRESETS

    return {k: v for k, v in RECON_PRESETS[name].items() if k != "steps"}  # steps come from the slider


RECON_QUALITY: dict[str, dict[str, Any]] = {"fast (CPU preview)": _preset("fast"), "full (recipe, GPU)": _preset("full")}


def recon_config(quality: str, steps: int, elevation: float, seed: int) -> Any:
    """The ReconConfig of the 3D tab's controls (raises ValueError for bad values)."""
    from zero1to3.recon.config import ReconConfig

    if quality not in RECON_QUALITY:
        raise ValueError(f"unknown quality {quality!r}; expected one of {', '.join(RECON_QUALITY)}")
    return ReconConfig(steps=max(int(steps), 1), elevation_deg=float(elevation), seed=int(seed),
                       **RECON_QUALITY[quality])


def recon_status() -> tuple[bool, str]:
    """Whether image->3D can run in this install, and why not (shown in the 3D tab)."""
    try:
        from zero1to3.recon.config import ReconConfig  # noqa: F401
        from zero1to3.recon.reconstruct import reconstruct  # noqa: F401
    except Exception as exc:  # an unfinished or broken recon module must not take the demo down
        return False, f"3D reconstruction is not available in this install ({type(exc).__name__}: {exc})."
    return True, ""


# ----------------------------------------------------------------------------------------------- app
#: Where the embedded model's card lives in the project's source tree.
MODEL_CARD = "docs/model_card.md"


def about_model(pipe: "Zero123Pipeline", info: "DemoInfo") -> str:
    """The page's short note on what the served model is and what it can and cannot do."""
    size, millions = pipe.image_size, pipe.num_parameters / 1e6
    where = "GPU" if str(pipe.device).startswith("cuda") else "CPU"
    text = (f"**{info.model_name}**: {millions:.0f} M parameters, {size}×{size} px views, running on the {where}. ")
    if info.model_name == "embedded default model":
        text += ("A small model trained by this project on rendered 3D objects, so that everything works "
                 "offline on a CPU. It turns the camera around simple objects like the examples; at this size "
                 "it has little fine detail and real photos come out blurry. For photos, serve the official "
                 "Zero-1-to-3 weights with `zero1to3 demo --model PATH`. ")
    return text + (f"Data, training, measured quality and limits: the model card (`{MODEL_CARD}` in the "
                   "project's source).")


def slow_choice_warning(quality: str, steps: float, on_gpu: bool) -> str:
    """A note when a 3D choice will take very long on this device (empty when it will not)."""
    if on_gpu:
        return ""
    if quality.startswith("full"):
        return ("⚠️ The full recipe is meant for a GPU: on this CPU it takes hours. The fast preview takes "
                "minutes.")
    if float(steps) > 200:
        return f"⚠️ {int(steps)} steps on a CPU take a long time (60 take a few minutes)."
    return ""


@dataclass
class DemoInfo:
    """What the page says about the model it runs."""

    model_name: str = "embedded default model"
    warning: str | None = None  # e.g. random weights: shown as a banner at the top
    default_steps: int = 50


_CSS = """
#model-warning {border: 2px solid #d97706; border-radius: 8px; padding: 4px 12px; background: #fffbeb;}
#preset-row button {min-width: 0;}
"""


def build_app(pipe: "Zero123Pipeline", info: DemoInfo | None = None) -> "gr.Blocks":
    """The demo page for ``pipe``. Model jobs share one queue slot (the CPU has no room for two)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    info = info or DemoInfo()
    jobs = JobRegistry()
    workdir = Path(tempfile.mkdtemp(prefix="zero1to3-demo-"))
    # uploads land inside the demo's folder too, so one removal (session end, exit, SIGTERM) cleans up all
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")
    examples = [str(p) for p in example_images()]
    recon_ok, recon_why = recon_status()

    def session_of(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "local"

    def user_error(exc: Exception) -> gr.Error:
        return gr.Error(page_message(exc))

    def session_dir(request: gr.Request | None) -> Path:
        """This browser session's output folder (deleted when the session ends)."""
        folder = workdir / "sessions" / "".join(c for c in session_of(request) if c.isalnum())[:64]
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    last_warning: dict[str, tuple[str, float]] = {}  # session -> (message, time) of its last preview warning

    def on_unload(request: gr.Request) -> None:
        last_warning.pop(session_of(request), None)
        shutil.rmtree(workdir / "sessions" / "".join(c for c in session_of(request) if c.isalnum())[:64],
                      ignore_errors=True)

    # --- callbacks -----------------------------------------------------------------------------
    def on_preview(image: str | None, ratio: float, request: gr.Request = None):
        """The preview, or None (cleared) with one message when the image cannot be used.

        One upload can fire the image's change event twice (Gradio); the same message for the same session
        within 5 s is shown once.
        """
        if image is None:
            return None
        try:
            ratio = check_range("foreground size", float(ratio), 0.05, 1.0)
            return preprocess_preview(image, ratio, model_size=pipe.image_size)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one message on the page
            message, now, session = page_message(exc), time.monotonic(), session_of(request)
            previous = last_warning.get(session)
            if previous is None or previous[0] != message or now - previous[1] > 5.0:
                gr.Warning(message)
            last_warning[session] = (message, now)
            return None

    def on_plot(polar: float, azimuth: float, radius: float):
        try:
            return camera_figure(polar, azimuth, radius)
        except ValueError as exc:
            raise user_error(exc) from None

    def on_preset(name: str) -> Callable[[], tuple[float, float, float]]:
        return lambda: preset_pose(name)

    def run_job(request: gr.Request | None, progress: gr.Progress, desc: str,
                work: Callable[[Callable[[int, int], None]], Any]) -> Any:
        session = session_of(request)
        flag = jobs.start(session)

        def on_step(done: int, total: int) -> None:
            _check(flag)
            progress((done, total), desc=desc)

        try:
            return work(on_step)
        except JobCancelled:
            gr.Warning("Job cancelled.")
            return None
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - the page gets our words, the log gets the trace
            raise user_error(exc) from None
        finally:
            jobs.finish(session, flag)

    def sampling_args(guidance: float, steps: float, scheduler: str, seed: float, ratio: float) -> dict:
        try:
            guidance = check_range("guidance scale", float(guidance), 0.0, 100.0)
            ratio = check_range("foreground size", float(ratio), 0.05, 1.0)
            steps_value = check_range("sampler steps", float(steps), 1, MAX_STEPS)
            seed_value = float(seed or 0)
        except (TypeError, ValueError) as exc:
            raise user_error(exc) from None
        if not (math.isfinite(seed_value) and seed_value == int(seed_value) and 0 <= seed_value <= MAX_SEED):
            raise gr.Error(f"The seed must be a whole number from 0 to {MAX_SEED}.")
        if scheduler not in SCHEDULER_CHOICES:
            raise gr.Error(f"Unknown scheduler {str(scheduler)[:40]!r}.")
        return dict(guidance_scale=guidance, num_inference_steps=int(steps_value), scheduler=scheduler,
                    seed=int(seed_value), foreground_ratio=ratio)

    def on_generate(image: str | None, ratio: float, polar: float, azimuth: float, radius: float,
                    samples: float, guidance: float, steps: float, scheduler: str, seed: float,
                    request: gr.Request, progress: gr.Progress = gr.Progress()):
        if image is None:
            raise gr.Error("Upload an image or pick an example first.")
        try:
            pose = RelativePose.from_degrees(*clamp_pose(polar, azimuth, radius))
        except ValueError as exc:
            raise user_error(exc) from None
        n = min(max(int(samples), 1), MAX_SAMPLES)
        kwargs = sampling_args(guidance, steps, scheduler, seed, ratio)
        start = time.perf_counter()
        array = run_job(request, progress, "sampling",
                        lambda hook: sample_views(pipe, image, [pose], num_samples=n, on_step=hook, **kwargs))
        if array is None:
            return gr.update(), gr.update()
        p, a, r = pose.degrees()
        gallery = [(for_display(s), f"sample {i + 1} (seed {kwargs['seed'] + i})") for i, s in enumerate(array[0])]
        status = (f"{n} view(s) at polar {polar:+.0f}°, azimuth {azimuth:+.0f}°, radius {radius:+.2f} "
                  f"in {time.perf_counter() - start:.1f} s")
        return gallery, status

    def on_orbit(image: str | None, ratio: float, polar: float, radius: float, guidance: float, steps: float,
                 scheduler: str, seed: float, request: gr.Request, progress: gr.Progress = gr.Progress()):
        if image is None:
            raise gr.Error("Upload an image or pick an example first.")
        kwargs = sampling_args(guidance, steps, scheduler, seed, ratio)
        try:
            poses = orbit_poses(polar, radius)
        except ValueError as exc:
            raise user_error(exc) from None
        array = run_job(request, progress, "orbit",
                        lambda hook: sample_views(pipe, image, poses, num_samples=1, on_step=hook, **kwargs))
        if array is None:
            return gr.update()
        out = Path(tempfile.mkdtemp(dir=session_dir(request))) / "orbit.gif"
        return str(write_gif(list(array[:, 0]), out))

    def on_recon(image: str | None, ratio: float, quality: str, steps: float, elevation: float, seed: float,
                 request: gr.Request, progress: gr.Progress = gr.Progress()):
        if not recon_ok:
            raise gr.Error(recon_why)
        if image is None:
            raise gr.Error("Upload an image or pick an example first.")
        from zero1to3.recon.reconstruct import reconstruct

        try:
            steps = check_range("optimisation steps", float(steps), 1, MAX_RECON_STEPS)
            config = recon_config(quality, int(steps), check_range("elevation", float(elevation), -89, 89),
                                  sampling_args(3.0, 2, "ddim", seed, ratio)["seed"])
            crop = preprocess_preview(image, ratio, size=pipe.image_size)
        except gr.Error:
            raise
        except (ValueError, TypeError) as exc:
            raise user_error(exc) from None
        total = config.steps

        def work(hook: Callable[[int, int], None]) -> Any:
            hook(0, total)
            result = reconstruct(pipe, crop, config, progress=False,
                                 callback=lambda step, record: hook(step + 1, total))
            out = Path(tempfile.mkdtemp(dir=session_dir(request)))
            paths = result.save(out, mesh_format="glb", turntable=False)
            return result, paths["mesh"]

        start = time.perf_counter()
        from zero1to3.recon.mesh import EmptyMeshError

        try:
            done = run_job(request, progress, "reconstructing", lambda hook: _no_mesh_as_value(work, hook))
        except gr.Error:
            raise
        if done is None:
            return gr.update(), gr.update(), "Cancelled."
        if isinstance(done, EmptyMeshError):
            raise gr.Error("No mesh: the reconstruction found no surface; try more steps or another image.")
        result, mesh_path = done
        note = (f"{len(result.mesh.vertices)} vertices, {len(result.mesh.faces)} faces "
                f"in {time.perf_counter() - start:.0f} s ({config.steps} steps).")
        return str(mesh_path), str(mesh_path), note

    def on_stop(request: gr.Request) -> None:
        if not jobs.cancel(session_of(request)):
            gr.Info("Nothing is running.")

    def _no_mesh_as_value(work: Callable, hook: Callable) -> Any:
        from zero1to3.recon.mesh import EmptyMeshError

        try:
            return work(hook)
        except EmptyMeshError as exc:
            return exc

    # --- layout --------------------------------------------------------------------------------
    atexit.register(shutil.rmtree, workdir, True)
    extra = {} if _launch_takes_css() else {"css": _CSS}
    # delete_cache: uploads and outputs of sessions that never closed (API clients) go after an hour
    with gr.Blocks(title="Zero-1-to-3 demo", delete_cache=(600, 3600), **extra) as demo:
        gr.Markdown("# Zero-1-to-3: new views of an object from one photo\n"
                    f"Model: **{info.model_name}**. Upload a photo of one object (on a plain light "
                    "background, or with transparency), move the camera, and generate.")
        if info.warning:
            gr.Markdown(f"⚠️ {info.warning}", elem_id="model-warning")
        with gr.Accordion("About this model", open=False, elem_id="about-model"):
            gr.Markdown(about_model(pipe, info))
        with gr.Tabs():
            with gr.Tab("Novel views", id="nvs"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image = gr.Image(type="filepath", label="Input image", sources=["upload", "clipboard"],
                                         image_mode=None, height=256, elem_id="input-image")
                        if examples:
                            gr.Examples(examples, inputs=[image], label="Examples (CC0, rendered by the project)")
                        preview = gr.Image(type="pil", label=f"What the model sees ({pipe.image_size}×"
                                                             f"{pipe.image_size} px, enlarged)",
                                           interactive=False, height=256, elem_id="preview-image")
                        ratio = gr.Slider(0.3, 1.0, value=round(pipe.foreground_ratio, 2), step=0.01,
                                          label="Foreground size (share of the frame)", elem_id="fg-slider")
                    with gr.Column(scale=1):
                        polar = gr.Slider(*POLAR_RANGE, value=0.0, step=1, elem_id="polar-slider",
                                          label="Polar change (°, + moves the camera down)")
                        azimuth = gr.Slider(*AZIMUTH_RANGE, value=90.0, step=1, elem_id="azimuth-slider",
                                            label="Azimuth change (°, + turns the camera to its right)")
                        radius = gr.Slider(*RADIUS_RANGE, value=0.0, step=0.01, elem_id="radius-slider",
                                           label="Radius change (+ moves the camera away)")
                        with gr.Row(elem_id="preset-row"):
                            preset_buttons = {name: gr.Button(name.capitalize(), size="sm",
                                                              elem_id=f"preset-{name}") for name in PRESET_NAMES}
                        plot = gr.Plot(value=camera_figure(0.0, 90.0, 0.0), label="Cameras", elem_id="camera-plot")
                    with gr.Column(scale=1):
                        samples = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="Number of samples",
                                            elem_id="samples-slider")
                        with gr.Accordion("Advanced", open=False):
                            guidance = gr.Slider(1.0, 10.0, value=3.0, step=0.5, label="Guidance scale")
                            steps = gr.Slider(2, 200, value=info.default_steps, step=1, label="Sampler steps")
                            scheduler = gr.Radio(list(SCHEDULER_CHOICES), value="ddim", label="Scheduler")
                            seed = gr.Number(value=0, precision=0, label="Seed (sample i uses seed + i)")
                        with gr.Row():
                            generate = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                        status = gr.Markdown("", elem_id="status")
                        gallery = gr.Gallery(label="Generated views", columns=2, height=420, object_fit="contain",
                                             elem_id="gallery")
                        orbit_btn = gr.Button("Orbit animation (GIF)", elem_id="orbit-btn")
                        orbit_gif = gr.Image(type="filepath", label="Orbit", interactive=False,
                                             elem_id="orbit-gif")
            with gr.Tab("3D", id="recon"):
                if recon_ok:
                    gr.Markdown("Optimise a 3D field through the model (score distillation), then extract a "
                                "mesh. On a CPU use the fast quality: 60 steps take about 1.5-3 minutes.")
                else:
                    gr.Markdown(f"⚠️ {recon_why}", elem_id="recon-unavailable")
                with gr.Row():
                    with gr.Column(scale=1):
                        on_gpu = str(pipe.device).startswith("cuda")
                        quality = gr.Radio(list(RECON_QUALITY), value=list(RECON_QUALITY)[1 if on_gpu else 0],
                                           label="Quality", interactive=recon_ok)
                        recon_steps = gr.Slider(10, 1000, value=600 if on_gpu else 60, step=10,
                                                label="Optimisation steps", interactive=recon_ok,
                                                elem_id="recon-steps")
                        recon_elev = gr.Slider(-30, 60, value=0, step=1, label="Input view elevation (°)",
                                               interactive=recon_ok)
                        slow_note = gr.Markdown("", elem_id="slow-choice")
                        for control in (quality, recon_steps):
                            control.change(lambda q, n: slow_choice_warning(q, n, on_gpu), [quality, recon_steps],
                                           slow_note)
                        with gr.Row():
                            recon_btn = gr.Button("Reconstruct 3D", variant="primary", interactive=recon_ok,
                                                  elem_id="recon-btn")
                            recon_stop = gr.Button("Stop", variant="stop", elem_id="recon-stop-btn")
                        recon_note = gr.Markdown("", elem_id="recon-note")
                    with gr.Column(scale=2):
                        model3d = gr.Model3D(label="Mesh", height=420, elem_id="mesh-view")
                        mesh_file = gr.File(label="Download mesh (.glb)", elem_id="mesh-file")

        # --- events ----------------------------------------------------------------------------
        # every event has a concurrency bound: previews decode images (memory), the rest is light work
        previews = dict(concurrency_limit=PREVIEW_CONCURRENCY, concurrency_id="preview", show_progress="hidden")
        cheap = dict(concurrency_limit=LIGHT_CONCURRENCY, concurrency_id="light", show_progress="hidden")
        image.change(on_preview, [image, ratio], preview, **previews)
        ratio.release(on_preview, [image, ratio], preview, **previews)
        for slider in (polar, azimuth, radius):
            slider.change(on_plot, [polar, azimuth, radius], plot, trigger_mode="always_last", **cheap)
        for name, button in preset_buttons.items():
            button.click(on_preset(name), None, [polar, azimuth, radius], **cheap)
        model = dict(concurrency_limit=1, concurrency_id="model")
        generate.click(on_generate, [image, ratio, polar, azimuth, radius, samples, guidance, steps, scheduler, seed],
                       [gallery, status], **model)
        orbit_btn.click(on_orbit, [image, ratio, polar, radius, guidance, steps, scheduler, seed], orbit_gif, **model)
        recon_btn.click(on_recon, [image, ratio, quality, recon_steps, recon_elev, seed], [model3d, mesh_file, recon_note],
                        **model)
        for button in (stop, recon_stop):
            button.click(on_stop, None, None, concurrency_limit=LIGHT_CONCURRENCY, concurrency_id="control",
                         show_progress="hidden")
        demo.unload(on_unload)
    demo.zero1to3_workdir = workdir  # type: ignore[attr-defined]
    return demo


def launch(demo: "gr.Blocks", host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True) -> Any:
    """Serve the page; ``block=False`` returns at once (tests). Model jobs queue one at a time."""
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    extra = {"css": _CSS} if _launch_takes_css() else {}
    # show_error=False: an unexpected exception's text stays in the server log (handlers raise gr.Error
    # with the page's own words for everything a user can cause)
    return demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                       show_error=False, quiet=not block, max_file_size=MAX_UPLOAD, **extra)


def cleanup(demo: "gr.Blocks") -> None:
    """Close the server and delete the demo's folder (uploads and outputs of every session)."""
    try:
        demo.close()
    finally:
        shutil.rmtree(getattr(demo, "zero1to3_workdir", ""), ignore_errors=True) if getattr(
            demo, "zero1to3_workdir", None) else None


def _launch_takes_css() -> bool:
    """Gradio 6 moved ``css`` from ``Blocks()`` to ``launch()``; older versions take it in Blocks only."""
    import inspect

    import gradio as gr

    return "css" in inspect.signature(gr.Blocks.launch).parameters
