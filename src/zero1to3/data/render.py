"""Offscreen rasteriser for dataset renders (moderngl on EGL: Mesa llvmpipe on CPU, NVIDIA EGL on GPU).

Why moderngl: measured ~7x faster than alternatives here and pip-only (docs/data.md,
shared/notes/renderers.md). One GL context per process is created lazily and reused (:func:`get_renderer`);
worker processes each get their own.

Conventions: poses are world->camera [R|t] (Blender: camera looks down -Z, +Y up) and the horizontal field
of view is :data:`~zero1to3.camera.REFERENCE_FOV_DEG`, so a rendered point lands where
:func:`zero1to3.camera.project_points` says. Output RGBA is straight (not premultiplied) alpha, as Blender
writes PNGs; alpha is coverage (4x MSAA, optional supersampling on top).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import trimesh

from zero1to3.camera import REFERENCE_FOV_DEG
from zero1to3.data.procedural import normalize_mesh

__all__ = ["Light", "MAX_LIGHTS", "random_light", "RenderResult", "Renderer", "get_renderer", "render_views",
           "load_mesh", "normalize_mesh", "MESH_EXTENSIONS"]

#: File types :func:`load_mesh` accepts (what trimesh reads).
MESH_EXTENSIONS: tuple[str, ...] = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
in vec3 in_position;
in vec3 in_normal;
in vec4 in_color;
in vec2 in_uv;
out vec3 v_position;
out vec3 v_normal;
out vec4 v_color;
out vec2 v_uv;
void main() {
    gl_Position = mvp * vec4(in_position, 1.0);
    v_position = in_position;
    v_normal = in_normal;
    v_color = in_color;
    v_uv = in_uv;
}
"""

_FRAGMENT_SHADER = """
#version 330
#define MAX_LIGHTS 4
uniform int num_lights;
uniform vec3 light_dirs[MAX_LIGHTS];    // unit vectors from the surface towards each light, world frame
uniform vec3 light_colors[MAX_LIGHTS];  // intensity times colour
uniform float ambient;
uniform float specular;                 // Blinn-Phong weight (0 = matte)
uniform float shininess;
uniform vec3 eye;                       // camera centre, world frame
uniform bool use_texture;
uniform sampler2D albedo_tex;
in vec3 v_position;
in vec3 v_normal;
in vec4 v_color;
in vec2 v_uv;
out vec4 f_color;
void main() {
    vec4 texel = use_texture ? texture(albedo_tex, v_uv) : vec4(1.0);
    if (texel.a < 0.5) discard;     // cut-out textures (leaves, fences): alpha is coverage
    vec3 albedo = texel.rgb * v_color.rgb;
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;    // two-sided: meshes in the wild have inconsistent winding
    vec3 to_eye = normalize(eye - v_position);
    vec3 diffuse = vec3(ambient);
    vec3 highlight = vec3(0.0);
    for (int i = 0; i < num_lights; ++i) {
        float lambert = max(dot(n, light_dirs[i]), 0.0);
        diffuse += light_colors[i] * lambert;
        if (specular > 0.0 && lambert > 0.0) {
            vec3 h = normalize(light_dirs[i] + to_eye);
            highlight += light_colors[i] * specular * pow(max(dot(n, h), 0.0), shininess);
        }
    }
    f_color = vec4(min(albedo * diffuse + highlight, vec3(1.0)), 1.0);
}
"""

#: Most lights one render uses (the shader's array size).
MAX_LIGHTS = 4


@dataclass(frozen=True)
class Light:
    """Directional lights (Lambert, optional mild Blinn-Phong highlight) plus ambient: a cheap stand-in
    for the reference's random area light.

    ``direction``/``intensity`` is the key light; ``fill`` holds further ``(direction, intensity)`` lights
    (at most ``MAX_LIGHTS - 1``). ``specular`` 0 keeps the surface matte.
    """

    direction: tuple[float, float, float] = (0.3, -0.5, 0.8)
    intensity: float = 0.6
    ambient: float = 0.45
    fill: tuple[tuple[tuple[float, float, float], float], ...] = ()
    specular: float = 0.0
    shininess: float = 32.0

    def unit_direction(self) -> np.ndarray:
        return _unit(self.direction)

    def lights(self) -> list[tuple[np.ndarray, float]]:
        """(unit direction, intensity) of every light, key light first."""
        if len(self.fill) > MAX_LIGHTS - 1:
            raise ValueError(f"at most {MAX_LIGHTS - 1} fill lights, got {len(self.fill)}")
        return [(self.unit_direction(), float(self.intensity))] + [(_unit(d), float(i)) for d, i in self.fill]


def _unit(direction: Sequence[float]) -> np.ndarray:
    d = np.asarray(direction, np.float64)
    n = np.linalg.norm(d)
    if d.shape != (3,) or not np.isfinite(n) or n < 1e-12:
        raise ValueError("light direction must be a non-zero finite 3-vector")
    return d / n


def random_light(rng: np.random.Generator) -> Light:
    """A random light rig for one object: a key light mostly from above, 1-2 weaker fill lights from
    anywhere, ambient 0.35-0.55 and a mild specular highlight (0-0.25). Ambient plus all lights stays
    near 1.15, so a surface facing the key light shows about its albedo (game textures are authored dark
    for engines that add light maps; the reference renders are bright)."""
    ambient = float(rng.uniform(0.35, 0.55))
    budget = 1.15 - ambient
    key = rng.normal(size=3)
    key[2] = abs(key[2]) + 0.3
    key_share = float(rng.uniform(0.55, 0.8))
    fills = []
    count = int(rng.integers(1, 3))
    shares = rng.dirichlet(np.ones(count)) * (1.0 - key_share)
    for share in shares:
        direction = rng.normal(size=3)
        fills.append((tuple(float(x) for x in direction), float(budget * share)))
    return Light(tuple(float(x) for x in key), float(budget * key_share), ambient, tuple(fills),
                 specular=float(rng.uniform(0.0, 0.25)), shininess=float(rng.uniform(12.0, 64.0)))


@dataclass
class RenderResult:
    """``rgba`` uint8 [N, H, W, 4] (straight alpha); ``depth`` float32 [N, H, W] camera-space distance
    along the viewing axis (0 = background) or None."""

    rgba: np.ndarray
    depth: np.ndarray | None = None


def _y_up_to_z_up(mesh: trimesh.Trimesh) -> None:
    """glTF/OBJ are +Y up; Blender (which made the reference renders) imports them as +Z up."""
    mesh.apply_transform(np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64))


def load_mesh(path: str | os.PathLike[str], up_axis: str = "auto", normalize: bool = True) -> trimesh.Trimesh:
    """Load any mesh trimesh reads (scenes are flattened), optionally Y-up -> Z-up, and normalise.

    ``up_axis='auto'`` treats .obj/.glb/.gltf as +Y up (their convention; Blender converts them on
    import) and everything else as +Z up.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    loaded = trimesh.load(str(path), force="mesh", process=False)
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{path}: no triangles found")
    if up_axis == "auto":
        up_axis = "y" if path.suffix.lower() in (".obj", ".glb", ".gltf") else "z"
    if up_axis == "y":
        _y_up_to_z_up(loaded)
    elif up_axis != "z":
        raise ValueError(f"up_axis must be 'auto', 'y' or 'z', got {up_axis!r}")
    return normalize_mesh(loaded) if normalize else loaded


def _texture_image(mesh: trimesh.Trimesh) -> Any | None:
    """The base-colour image of a textured mesh (PIL), or None."""
    visual = mesh.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None:
        return None
    material = visual.material
    for attr in ("baseColorTexture", "image"):
        image = getattr(material, attr, None)
        if image is not None:
            return image
    return None


def _vertex_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, Any | None]:
    """Interleaved float32 [V, 12] (position, normal, rgba, uv) and an optional texture image."""
    vertices = np.asarray(mesh.vertices, np.float32)
    normals = np.asarray(mesh.vertex_normals, np.float32)
    count = len(vertices)
    uv = np.zeros((count, 2), np.float32)
    colours = np.ones((count, 4), np.float32)
    image = _texture_image(mesh)
    if image is not None:
        uv = np.asarray(mesh.visual.uv, np.float32)[:, :2]
        material = mesh.visual.material
        factor = getattr(material, "baseColorFactor", None)
        if factor is not None:
            colours[:] = np.asarray(factor, np.float32)[:4] / (255.0 if np.max(factor) > 1.0 else 1.0)
    else:
        visual = mesh.visual
        if isinstance(visual, trimesh.visual.TextureVisuals):
            visual = visual.to_color()  # material colour without an image
        vc = np.asarray(visual.vertex_colors)
        if vc.shape == (count, 4):
            colours = vc.astype(np.float32) / 255.0
    return np.concatenate([vertices, normals, colours, uv], axis=1).astype(np.float32), image


class Renderer:
    """One GL context plus shader; framebuffers are cached per resolution. Not thread-safe."""

    def __init__(self, samples: int = 4) -> None:
        import moderngl  # imported here so reading datasets never needs GL

        self._moderngl = moderngl
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.samples = max(0, min(int(samples), int(self.ctx.max_samples)))
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._fbos: dict[tuple[int, int], tuple[Any, Any, Any]] = {}
        self._white = self.ctx.texture((1, 1), 4, bytes([255, 255, 255, 255]))

    @property
    def gl_renderer(self) -> str:
        return str(self.ctx.info.get("GL_RENDERER", "unknown"))

    def _framebuffers(self, width: int, height: int) -> tuple[Any, Any, Any]:
        """(multisampled colour FBO or None, single-sample colour+depth FBO, depth-only FBO) for a size.

        The single-sample FBO is the MSAA resolve target, or the render target when MSAA is off (then it
        also yields depth in the same pass).
        """
        key = (width, height)
        if key not in self._fbos:
            ctx = self.ctx
            if len(self._fbos) > 4:  # bound the cache; sizes rarely change within a process
                self._release_fbos()
            # Half-float colour keeps precision when un-premultiplying low-coverage edge pixels.
            ms = None
            if self.samples > 0:
                ms = ctx.framebuffer([ctx.renderbuffer((width, height), 4, samples=self.samples, dtype="f2")],
                                     ctx.depth_renderbuffer((width, height), samples=self.samples))
            single = ctx.framebuffer([ctx.texture((width, height), 4, dtype="f2")], ctx.depth_texture((width, height)))
            depth = ctx.framebuffer([ctx.renderbuffer((width, height), 4)], ctx.depth_texture((width, height)))
            self._fbos[key] = (ms, single, depth)
        return self._fbos[key]

    def _release_fbos(self) -> None:
        for fbos in self._fbos.values():
            for fbo in fbos:
                if fbo is not None:
                    for attachment in (*fbo.color_attachments, fbo.depth_attachment):
                        if attachment is not None:
                            attachment.release()
                    fbo.release()
        self._fbos.clear()

    def render(self, mesh: trimesh.Trimesh, poses: np.ndarray | Sequence[np.ndarray],
               resolution: int | tuple[int, int] = 256, light: Light | None = None, depth: bool = False,
               fov_deg: float = REFERENCE_FOV_DEG, supersample: int = 1, msaa: bool = True) -> RenderResult:
        """Render ``mesh`` from each world->camera pose ([N, 3, 4] or [N, 4, 4]).

        ``resolution`` is a size or (width, height); ``fov_deg`` is horizontal. Anti-aliasing: ``msaa``
        (4x, free on GPUs, ~4 ms/view extra on llvmpipe) and/or ``supersample`` k (render k times larger,
        box-filter down; k=2 without MSAA is the cheaper choice on CPU).
        """
        moderngl = self._moderngl
        width, height = (resolution, resolution) if isinstance(resolution, (int, np.integer)) else resolution
        width, height, k = int(width), int(height), max(1, int(supersample))
        if width < 1 or height < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        poses = np.asarray(poses, np.float64)
        if poses.ndim == 2:
            poses = poses[None]
        if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)) or not np.all(np.isfinite(poses)):
            raise ValueError(f"poses must be finite [N, 3, 4] world->camera matrices, got {poses.shape}")
        light = light or Light()
        ctx = self.ctx
        data, image = _vertex_arrays(mesh)
        vbo = ctx.buffer(data.tobytes())
        ibo = ctx.buffer(np.asarray(mesh.faces, np.int32).tobytes())
        vao = ctx.vertex_array(self.program, [(vbo, "3f 3f 4f 2f", "in_position", "in_normal", "in_color", "in_uv")],
                               index_buffer=ibo, index_element_size=4)
        texture = None
        if image is not None:
            rgba = np.asarray(image.convert("RGBA"), np.uint8)[::-1]  # GL rows start at the bottom
            texture = ctx.texture((rgba.shape[1], rgba.shape[0]), 4, np.ascontiguousarray(rgba).tobytes())
            texture.build_mipmaps()
            texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            texture.repeat_x = texture.repeat_y = True
        (texture or self._white).use(location=0)
        self.program["albedo_tex"].value = 0
        self.program["use_texture"].value = texture is not None
        rig = light.lights()
        dirs = np.zeros((MAX_LIGHTS, 3), np.float32)
        cols = np.zeros((MAX_LIGHTS, 3), np.float32)
        for j, (direction, intensity) in enumerate(rig):
            dirs[j], cols[j] = direction, intensity
        self.program["num_lights"].value = len(rig)
        self.program["light_dirs"].write(dirs.tobytes())
        self.program["light_colors"].write(cols.tobytes())
        self.program["ambient"].value = float(light.ambient)
        self.program["specular"].value = float(light.specular)
        self.program["shininess"].value = float(light.shininess)

        rw, rh = width * k, height * k
        ms, single, depth_fbo = self._framebuffers(rw, rh)
        use_msaa = msaa and ms is not None
        centre = np.asarray(mesh.bounds, np.float64).mean(axis=0)
        bound_radius = float(np.linalg.norm(np.asarray(mesh.bounds)[1] - centre)) + 1e-6
        fx = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
        fy = fx * rw / rh  # horizontal FOV is fixed; the vertical one follows the aspect ratio
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)
        colours = np.empty((len(poses), height, width, 4), np.uint8)
        depths = np.empty((len(poses), height, width), np.float32) if depth else None
        try:
            for i, pose in enumerate(poses):
                view = np.eye(4)
                view[:3] = pose[:3]
                # Tight near/far around the bounding sphere keeps depth precision high.
                dist = float(np.linalg.norm(view[:3, :3] @ centre + view[:3, 3]))
                near = max(1e-3, 0.9 * (dist - bound_radius))
                far = max(near * 2.0, 1.1 * (dist + bound_radius))
                proj = np.array([[fx, 0, 0, 0], [0, fy, 0, 0],
                                 [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
                                 [0, 0, -1, 0]], np.float64)
                self.program["mvp"].write((proj @ view).T.astype("f4").tobytes())
                self.program["eye"].value = tuple(float(x) for x in -view[:3, :3].T @ view[:3, 3])
                target = ms if use_msaa else single
                target.use()
                target.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                vao.render(moderngl.TRIANGLES)
                if use_msaa:
                    ctx.copy_framebuffer(single, ms)
                pre = np.frombuffer(single.color_attachments[0].read(alignment=1), np.float16)
                pre = pre.reshape(rh, rw, 4)[::-1].astype(np.float32)
                if k > 1:
                    pre = pre.reshape(height, k, width, k, 4).mean(axis=(1, 3))
                alpha = np.clip(pre[..., 3:], 0.0, 1.0)
                rgb = np.where(alpha > 1e-4, pre[..., :3] / np.maximum(alpha, 1e-4), 0.0)
                colours[i] = np.round(np.clip(np.concatenate([rgb, alpha], axis=-1), 0.0, 1.0) * 255.0)
                if depths is not None:
                    if use_msaa:  # MSAA depth cannot be read back: one more single-sample pass
                        depth_fbo.use()
                        depth_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                        vao.render(moderngl.TRIANGLES)
                    source = depth_fbo if use_msaa else single
                    d = np.frombuffer(source.depth_attachment.read(alignment=1), np.float32)
                    d = d.reshape(rh, rw)[::-1].astype(np.float64)
                    z = 2.0 * near * far / (far + near - (2.0 * d - 1.0) * (far - near))
                    z[d >= 1.0] = 0.0
                    if k > 1:  # nearest sample per output pixel: averaging depths across edges is wrong
                        z = z[k // 2::k, k // 2::k]
                    depths[i] = z
        finally:
            vao.release()
            vbo.release()
            ibo.release()
            if texture is not None:
                texture.release()
        return RenderResult(colours, depths)

    def release(self) -> None:
        self._release_fbos()
        self.ctx.release()


_RENDERER: Renderer | None = None


def get_renderer() -> Renderer:
    """The process-wide renderer (created on first use; GL contexts are expensive and per process)."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    return _RENDERER


def render_views(mesh: trimesh.Trimesh, poses: np.ndarray | Sequence[np.ndarray],
                 resolution: int | tuple[int, int] = 256, light: Light | None = None, depth: bool = False,
                 fov_deg: float = REFERENCE_FOV_DEG, supersample: int = 1, msaa: bool = True) -> RenderResult:
    """Render with the process-wide renderer; see :meth:`Renderer.render`."""
    return get_renderer().render(mesh, poses, resolution, light=light, depth=depth, fov_deg=fov_deg,
                                 supersample=supersample, msaa=msaa)
