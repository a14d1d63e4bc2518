"""Trainer: CFG dropout fractions, pair sampling, conv_in surgery, few steps, resume with nothing lost,
and a 2-process accelerate launch on CPU (gloo) so the DDP code path stays alive without GPUs."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zero1to3.camera import (look_at, project_points, relative_pose, relative_pose_vectors, sample_reference_cameras,
                             spherical_of_camera, spherical_to_cartesian)
from zero1to3.model import preset
from zero1to3.pipeline import Zero123Pipeline
from zero1to3.seeding import mix_seed
from zero1to3.training import (AUGMENTATIONS, PairBatcher, PoseAlteredBatcher, TrainConfig, Trainer, augment_views,
                                cfg_dropout_masks, draw_timesteps, latest_checkpoint)

ROOT = Path(__file__).resolve().parents[1]


def _arrays(n=5, v=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, v, size, size, 3), dtype=np.uint8)
    poses = np.stack([sample_reference_cameras(rng, v) for _ in range(n)]).astype(np.float32)
    return images, poses


def test_cfg_dropout_fractions():
    keep_clip, keep_concat = cfg_dropout_masks(200_000, 0.05, torch.Generator().manual_seed(0))
    only_clip = ((keep_clip == 0) & (keep_concat == 1)).float().mean().item()
    both = ((keep_clip == 0) & (keep_concat == 0)).float().mean().item()
    only_concat = ((keep_clip == 1) & (keep_concat == 0)).float().mean().item()
    for frac in (only_clip, both, only_concat):
        assert frac == pytest.approx(0.05, abs=0.003)


def test_pair_batcher_pose_matches_camera_module():
    images, poses = _arrays()
    batcher = PairBatcher(images, poses)
    batch = batcher.batch(step=3, batch_size=16, seed=0)
    assert batch["target"].shape == (16, 3, 64, 64) and batch["target"].min() >= -1 and batch["target"].max() <= 1
    # recover which views were drawn by matching pixels, then compare T with camera.relative_pose
    for k in range(4):
        tgt = ((batch["target"][k] + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.uint8)
        cnd = ((batch["cond"][k] + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.uint8)
        (o, vt), = [(o, v) for o in range(5) for v in range(4) if np.array_equal(images[o, v], tgt)]
        (o2, vc), = [(o, v) for o in range(5) for v in range(4) if np.array_equal(images[o, v], cnd)]
        assert o == o2 and vt != vc
        np.testing.assert_allclose(batch["pose"][k].numpy(), relative_pose(poses[o, vt], poses[o, vc]).vector(),
                                   atol=1e-5)
    # the batch is a pure function of (seed, step, rank): what resume relies on
    again = batcher.batch(step=3, batch_size=16, seed=0)
    torch.testing.assert_close(again["pose"], batch["pose"])
    assert mix_seed(0, 1, 2) == mix_seed(0, 1, 2) != mix_seed(0, 2, 1)


def test_near_view_pairs_take_the_closest_camera_to_the_target():
    images, poses = _arrays(n=3, v=8)
    batcher = PairBatcher(images, poses)
    # every other view a candidate: the input must be the target's nearest neighbour in camera direction
    batch = batcher.batch(step=1, batch_size=64, near_view_candidates=40)
    centres = -np.einsum("novi,nov->noi", poses[..., :3], poses[..., 3])  # R^T t, per view
    directions = centres / np.linalg.norm(centres, axis=-1, keepdims=True)
    for target, cond in zip(batch["target_index"].tolist(), batch["cond_index"].tolist()):
        obj, vt = divmod(target, 8)
        assert cond // 8 == obj and cond % 8 != vt
        cosine = directions[obj] @ directions[obj, vt]
        cosine[vt] = -2.0
        assert cond % 8 == int(np.argmax(cosine))
    # one candidate: the paper's uniform pairs, the same draw as the batcher's default
    uniform = batcher.batch(step=1, batch_size=64, near_view_candidates=1)
    torch.testing.assert_close(uniform["pose"], batcher.batch(step=1, batch_size=64)["pose"])
    gaps = [abs(a % 8 - b % 8) for a, b in zip(uniform["target_index"].tolist(), uniform["cond_index"].tolist())]
    assert min(gaps) >= 1 and len(set(gaps)) > 3


def test_timestep_power_skews_the_draw_towards_noise():
    g = torch.Generator().manual_seed(0)
    uniform = draw_timesteps(200_000, 1000, 1.0, g).float()
    torch.testing.assert_close(draw_timesteps(16, 1000, 1.0, torch.Generator().manual_seed(3)),
                               torch.randint(0, 1000, (16,), generator=torch.Generator().manual_seed(3)))
    skewed = draw_timesteps(200_000, 1000, 2.0, g).float()
    assert 0 <= skewed.min() and skewed.max() <= 999
    assert abs(uniform.mean().item() - 499.5) < 3
    assert abs(skewed.mean().item() - 2000 / 3) < 3  # density 2t/T^2: mean 2T/3
    assert abs((skewed < 500).float().mean().item() - 0.25) < 0.01  # P(t < T/2) = 1/4
    with pytest.raises(ValueError, match="timestep_power"):
        TrainConfig(timestep_power=0.0)
    with pytest.raises(ValueError, match="near_view_candidates"):
        TrainConfig(near_view_candidates=0)


def test_conv_in_surgery_keeps_old_channels():
    from zero1to3.model import conv_in_surgery

    old = torch.nn.Conv2d(4, 8, 3, padding=1)
    new = conv_in_surgery(old, 8)
    torch.testing.assert_close(new.weight[:, :4], old.weight)
    assert new.weight[:, 4:].abs().max() == 0
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(new(torch.cat([x, torch.randn(1, 4, 5, 5)], 1)), old(x))


def _config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=4, checkpoint_every=2, sample_every=0,
                log_every=2, train_image_encoder=True, ema_decay=0.9, learning_rate=1e-3, warmup_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def test_train_resume_loses_nothing(tmp_path):
    """Straight 4 steps == 2 steps, 'kill', resume to 4 steps (same weights, same loss log)."""
    arrays = _arrays()
    straight = Trainer(_config(tmp_path / "a"), arrays=arrays)
    straight.fit()
    first = Trainer(_config(tmp_path / "b", max_steps=2), arrays=arrays)
    first.fit()
    assert latest_checkpoint(tmp_path / "b" / "run").name == "step_00000002"
    resumed = Trainer(_config(tmp_path / "b"), arrays=arrays)
    assert resumed.step == 2
    resumed.fit()
    for p, q in zip(straight.module.parameters(), resumed.module.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    log_a = [json.loads(line) for line in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [2, 4]
    assert log_a[-1]["loss"] == pytest.approx(log_b[-1]["loss"], rel=1e-4)
    # export is a loadable pipeline with EMA weights
    path = resumed.export(tmp_path / "export")
    from zero1to3.pipeline import Zero123Pipeline

    pipe = Zero123Pipeline.from_pretrained(path, dtype=torch.float32)
    assert pipe.image_size == 64


def test_latent_cache_gives_the_same_loss_as_encoding(tmp_path):
    """The cached posterior (mean, std) and per-step VAE encoding feed the same numbers to the same loss."""
    arrays = _arrays()
    cached = Trainer(_config(tmp_path / "a", cache_latents=True), arrays=arrays)
    direct = Trainer(_config(tmp_path / "b", cache_latents=False), arrays=arrays)
    assert cached.latent_cache is not None and direct.latent_cache is None
    assert cached.latent_cache[0].shape == (5 * 4, 4, 16, 16)
    batch = cached.batcher.batch(step=1, batch_size=6)
    # the cache row of a flat index is that view's encoding
    mean, std = cached.latent_cache
    dist = cached.vae.encode(batch["target"]).latent_dist
    torch.testing.assert_close(mean[batch["target_index"]], dist.mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(std[batch["target_index"]], dist.std, atol=1e-5, rtol=1e-4)
    a = cached.loss(batch, torch.Generator().manual_seed(3))
    b = direct.loss(batch, torch.Generator().manual_seed(3))
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert a.item() != pytest.approx(cached.loss(batch, torch.Generator().manual_seed(4)).item(), rel=1e-3)
    # the cache can be bypassed explicitly (held-out batchers), and needs no target pixels
    assert cached.loss(batch, torch.Generator().manual_seed(3), use_cache=False).item() == pytest.approx(b.item(),
                                                                                                        rel=1e-5)
    lean = cached.batcher.batch(step=1, batch_size=6, with_target_pixels=False)
    assert "target" not in lean and torch.equal(lean["target_index"], batch["target_index"])
    assert cached.loss(lean, torch.Generator().manual_seed(3)).item() == a.item()


def test_cosine_schedule_and_evaluation_loss(tmp_path):
    trainer = Trainer(_config(tmp_path, lr_schedule="cosine", warmup_steps=2, max_steps=10, min_lr_ratio=0.1),
                      arrays=_arrays())
    factors = [trainer._lr_factor(s) for s in (0, 1, 5, 10, 20)]
    cosine = lambda progress: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))  # noqa: E731
    assert factors == pytest.approx([0.5 * cosine(0.0), cosine(0.1), cosine(0.5), 0.1, 0.1])
    with pytest.raises(ValueError, match="lr_schedule"):
        Trainer(_config(tmp_path / "x", lr_schedule="linear"), arrays=_arrays())
    trainer.fit()
    before = [p.clone() for p in trainer.module.parameters()]
    first = trainer.evaluation_loss(batches=2, batch_size=4)
    assert first == trainer.evaluation_loss(batches=2, batch_size=4)  # fixed pairs, noise, timesteps
    held_out = PairBatcher(*_arrays(n=3, seed=9))
    assert trainer.evaluation_loss(held_out, batches=2, batch_size=4) != first
    for p, q in zip(before, trainer.module.parameters()):  # EMA swapped in and back out
        assert torch.equal(p, q)


def test_export_keeps_the_input_framing(tmp_path):
    """A fine-tuned model crops photos as the model it came from (or as configured), not the default."""
    shipped = ROOT / "src" / "zero1to3" / "weights" / "tiny"
    arrays = _arrays(n=2, v=2)
    kept = Trainer(_config(tmp_path / "a", init_from=str(shipped), max_steps=0), arrays=arrays)
    assert kept.pipeline().foreground_ratio == pytest.approx(0.6)
    chosen = Trainer(_config(tmp_path / "b", foreground_ratio=0.7), arrays=arrays)
    path = chosen.export(tmp_path / "export")
    assert json.loads((path / "model_index.json").read_text())["zero1to3"]["foreground_ratio"] == pytest.approx(0.7)


def test_unet_from_scratch_keeps_the_codecs_and_exports_int8(tmp_path):
    """A larger UNet over the shipped codecs: VAE, image encoder and projection carried over exactly, the UNet
    new at the preset's size; the int8 export loads back with the same architecture."""
    shipped = ROOT / "src" / "zero1to3" / "weights" / "tiny"
    base = Zero123Pipeline.from_pretrained(shipped, dtype=torch.float32)
    trainer = Trainer(_config(tmp_path, init_from=str(shipped), preset="small", unet_from_scratch=True,
                              max_steps=1), arrays=_arrays(n=2, v=2))
    pipe = trainer.pipeline(use_ema=False)
    assert tuple(pipe.unet.config.block_out_channels) == tuple(preset("small").unet.block_out_channels)
    assert tuple(base.unet.config.block_out_channels) != tuple(pipe.unet.config.block_out_channels)
    for name in ("vae", "image_encoder", "camera_projection"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(base, name).state_dict()
        assert all(torch.equal(mine[k].float(), theirs[k].float()) for k in theirs), name
    trainer.fit()
    path = trainer.export(tmp_path / "export", unet_weight_bits=8)
    assert (path / "unet" / "weights_int8.safetensors").is_file() or list((path / "unet").glob("weights_int8-*"))
    loaded = Zero123Pipeline.from_pretrained(path)
    assert tuple(loaded.unet.config.block_out_channels) == tuple(preset("small").unet.block_out_channels)
    with pytest.raises(ValueError, match="unet_weight_bits"):
        loaded.save_pretrained(tmp_path / "bad", unet_weight_bits=4)


def test_grow_unet_computes_exactly_what_the_smaller_unet_computes():
    """tiny -> tiny-deep: every old weight kept, twice the parameters, the same output to the bit; the new
    layers' zero output projections get gradients, so one optimiser step makes them count."""
    from zero1to3.model import build_unet, grow_unet

    torch.manual_seed(0)
    small = build_unet(preset("tiny"))
    grown = grow_unet(small, preset("tiny-deep"))
    n_small, n_grown = (sum(p.numel() for p in m.parameters()) for m in (small, grown))
    assert n_grown > 2 * n_small > 14e6
    grown_weights = grown.state_dict()
    assert all(torch.equal(w, grown_weights[k]) for k, w in small.state_dict().items())
    x, t, c = torch.randn(3, 8, 16, 16), torch.tensor([5, 500, 995]), torch.randn(3, 1, 256)
    with torch.no_grad():
        assert torch.equal(small(x, t, c).sample, grown(x, t, c).sample)
    new_out = grown.down_blocks[2].attentions[0].proj_out.weight
    new_block = grown.mid_block.attentions[0].transformer_blocks[2].attn1.to_out[0].weight
    assert new_out.abs().max() == 0 and new_block.abs().max() == 0
    grown(x, t, c).sample.square().mean().backward()
    assert new_out.grad.abs().max() > 0 and new_block.grad.abs().max() > 0
    with torch.no_grad():
        for p in grown.parameters():
            p -= 1e-2 * p.grad
        assert not torch.allclose(small(x, t, c).sample, grown(x, t, c).sample)


def test_grow_unet_refuses_anything_but_attention_depth():
    from zero1to3.model import build_unet, grow_unet

    tiny = build_unet(preset("tiny"))
    with pytest.raises(ValueError, match="only attention depth may grow"):
        grow_unet(tiny, preset("small"))  # other channel widths
    deep = build_unet(preset("tiny-deep"))
    with pytest.raises(ValueError, match="only attention depth may grow"):
        grow_unet(deep, preset("tiny"))  # shrinking
    with pytest.raises(ValueError, match="grow_unet needs init_from"):
        TrainConfig(grow_unet=True, preset="tiny-deep")


def test_trainer_grows_the_shipped_unet_and_samples_what_it_sampled(tmp_path):
    """--grow-unet from the shipped model: the same images for the same seed before training (the sampling
    path, not only the UNet), codecs untouched, and the int8 export loads back as tiny-deep."""
    shipped = ROOT / "src" / "zero1to3" / "weights" / "tiny"
    base = Zero123Pipeline.from_pretrained(shipped, dtype=torch.float32)
    trainer = Trainer(_config(tmp_path, init_from=str(shipped), preset="tiny-deep", grow_unet=True, max_steps=1),
                      arrays=_arrays(n=2, v=2))
    pipe = trainer.pipeline(use_ema=False)
    assert list(pipe.unet.config.transformer_layers_per_block) == [1, 2, 3]
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    kwargs = dict(num_inference_steps=3, seed=1, output_type="np", preprocess=False)
    poses = [(20.0, 90.0, 0.0), (-10.0, -45.0, 0.2)]
    np.testing.assert_array_equal(base(image, poses, **kwargs).images, pipe(image, poses, **kwargs).images)
    for name in ("vae", "image_encoder", "camera_projection"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(base, name).state_dict()
        assert all(torch.equal(mine[k].float(), theirs[k].float()) for k in theirs), name
    trainer.fit()
    loaded = Zero123Pipeline.from_pretrained(trainer.export(tmp_path / "export", unet_weight_bits=8))
    assert list(loaded.unet.config.transformer_layers_per_block) == [1, 2, 3]
    assert sum(p.numel() for p in loaded.unet.parameters()) == sum(p.numel() for p in pipe.unet.parameters())


def test_pose_use_sees_what_the_projection_reads(tmp_path):
    """Pose columns of the camera projection zeroed: no alteration moves the loss; the sin(d_azimuth) column
    alone set: mirroring moves it, zeroing moves it, and the pose batch itself is altered as documented."""
    trainer = Trainer(_config(tmp_path, max_steps=0), arrays=_arrays(n=4, v=4))
    weight = trainer.accelerator.unwrap_model(trainer.module).camera_projection.projection.weight
    embed = weight.shape[1] - 4
    kw = dict(use_ema=False, batches=2, batch_size=16)
    with torch.no_grad():
        weight[:, embed:] = 0.0
    blind = trainer.pose_use(**kw)
    assert blind["mirror_increase"] == 0.0 and blind["shuffle_increase"] == 0.0 and blind["zero_increase"] == 0.0
    with torch.no_grad():
        weight[:, embed + 1] = 3.0  # the model now reads sin(d_azimuth) only
    seeing = trainer.pose_use(**kw)
    assert seeing["mirror_increase"] != 0.0 and seeing["zero_increase"] != 0.0
    true = trainer.batcher.batch(5, 8, seed=1)["pose"]
    mirrored = PoseAlteredBatcher(trainer.batcher, "mirror").batch(5, 8, seed=1)["pose"]
    assert torch.equal(mirrored[:, 1], -true[:, 1]) and torch.equal(mirrored[:, [0, 2, 3]], true[:, [0, 2, 3]])
    shuffled = PoseAlteredBatcher(trainer.batcher, "shuffle").batch(5, 8, seed=1)["pose"]
    assert sorted(shuffled[:, 0].tolist()) == sorted(true[:, 0].tolist())
    assert not PoseAlteredBatcher(trainer.batcher, "zero").batch(5, 8, seed=1)["pose"].any()
    with pytest.raises(ValueError, match="mirror"):
        PoseAlteredBatcher(trainer.batcher, "flip")


def test_no_half_checkpoint_after_interrupted_write(tmp_path):
    arrays = _arrays()
    trainer = Trainer(_config(tmp_path, max_steps=2), arrays=arrays)
    trainer.fit()
    broken = tmp_path / "run" / "checkpoints" / "step_00000004.tmp"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"


def test_signal_stops_and_checkpoints(tmp_path):
    arrays = _arrays()
    trainer = Trainer(_config(tmp_path, max_steps=50, checkpoint_every=1000), arrays=arrays)
    trainer._stop = True  # what SIGTERM/SIGINT set
    result = trainer.fit()
    assert result["stopped"] and result["step"] == 1
    assert latest_checkpoint(tmp_path / "run").name == "step_00000001"


@pytest.mark.slow
def test_accelerate_launch_two_processes_cpu(tmp_path):
    """DDP over gloo on CPU: the multi-GPU code path runs a few steps and writes a checkpoint."""
    images, poses = _arrays(n=4, v=3)
    np.savez(tmp_path / "arrays.npz", images=images, poses=poses)
    script = tmp_path / "run_ddp.py"
    script.write_text(
        "import numpy as np, sys\n"
        "from zero1to3.training import TrainConfig, Trainer\n"
        f"d = np.load(r'{tmp_path / 'arrays.npz'}')\n"
        f"cfg = TrainConfig(output_dir=r'{tmp_path / 'run'}', batch_size=4, max_steps=2, checkpoint_every=2,"
        " sample_every=0, log_every=1, train_image_encoder=True)\n"
        "t = Trainer(cfg, arrays=(d['images'], d['poses']))\n"
        "r = t.fit()\n"
        "line = f'world {t.accelerator.num_processes} rank {t.accelerator.process_index} {r}\\n'\n"
        "sys.stdout.write(line); sys.stdout.flush()  # one write: the two ranks share the pipe\n")
    # --multi_gpu selects accelerate's torchrun launcher; with no GPU the processes join over gloo (MULTI_CPU)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    errors = []
    for _attempt in range(2):  # one retry: gloo's rendezvous on a loaded 2-core host can time out
        with socket.socket() as sock:  # a free rendezvous port: the default 29500 may be taken
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
               "--dynamo_backend", "no", str(script)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode == 0:
            break
        errors.append(result.stderr[-3000:])
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
    assert result.returncode == 0, "\n---\n".join(errors)
    assert "world 2 rank 0" in result.stdout and "world 2 rank 1" in result.stdout
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)


def test_cli_render_train_resume_sample(tmp_path):
    """The newcomer's path end to end on CPU: render -> train a few steps -> resume -> sample."""
    from zero1to3.cli import main

    data = tmp_path / "data"
    assert main(["render", "-o", str(data), "--procedural", "3", "--views", "3", "--resolution", "64", "--quiet"]) == 0
    common = ["train", "--data", str(data), "--output-dir", str(tmp_path / "run"), "--batch-size", "2",
              "--checkpoint-every", "2", "--sample-every", "0", "--log-every", "1", "--train-image-encoder"]
    assert main(common + ["--max-steps", "2"]) == 0
    assert main(common + ["--max-steps", "3", "--export", str(tmp_path / "model")]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    out = tmp_path / "views"
    view = next(data.glob("proc_*")) / "000.png"
    assert main(["nvs", str(view), "--model", str(tmp_path / "model"), "-n", "1", "--steps", "2", "-o", str(out),
                 "--no-preprocess", "--device", "cpu"]) == 0
    assert (out / "grid.png").is_file()


def test_channels_last_trains_the_same_numbers_and_round_trips(tmp_path):
    """NHWC is a layout, not a model: same loss and gradients as the default layout on the same batch, and its
    checkpoints resume and export like any other (safetensors needs contiguous tensors)."""
    arrays = _arrays()
    plain = Trainer(_config(tmp_path / "a"), arrays=arrays)
    nhwc = Trainer(_config(tmp_path / "b", channels_last=True), arrays=arrays)
    conv = nhwc.module.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = plain.batcher.batch(step=1, batch_size=6)
    grads = []
    for trainer in (plain, nhwc):
        loss = trainer.loss(batch, torch.Generator().manual_seed(3))
        loss.backward()
        grads.append((loss.item(), trainer.module.unet.conv_in.weight.grad.clone(),
                      trainer.module.camera_projection.projection.weight.grad.clone()))
        trainer.optimizer.zero_grad(set_to_none=True)
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1:], grads[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    nhwc.fit()
    resumed = Trainer(_config(tmp_path / "b", channels_last=True, max_steps=6), arrays=arrays)
    assert resumed.step == 4
    for p, q in zip(nhwc.module.parameters(), resumed.module.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    exported = Zero123Pipeline.from_pretrained(resumed.export(tmp_path / "export"))
    torch.testing.assert_close(exported.unet.conv_in.weight.float(),
                               resumed.pipeline().unet.conv_in.weight.half().float())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the compiled training path is for GPUs)")
def test_compiled_unet_gradients_equal_eager_on_the_gpu(tmp_path):
    """compile_unet must not change the numbers: same fp32 loss and UNet gradients as eager on one batch
    (Inductor has given wrong gradients for this UNet on a CPU), and checkpoints keep their keys."""
    torch.backends.cudnn.allow_tf32 = False
    arrays = _arrays(n=6, v=4)
    eager = Trainer(_config(tmp_path / "a", batch_size=32), arrays=arrays)
    compiled = Trainer(_config(tmp_path / "b", batch_size=32, compile_unet=True), arrays=arrays)
    batch = eager.batcher.batch(step=1, batch_size=32)
    grads = []
    for trainer in (eager, compiled):
        loss = trainer.loss(batch, torch.Generator(device="cuda").manual_seed(3))
        loss.backward()
        grads.append((loss.item(), torch.cat([p.grad.flatten() for p in trainer.module.unet.parameters()])))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-4)
    error = (grads[1][1] - grads[0][1]).norm() / grads[0][1].norm()
    assert error < 1e-3, f"compiled UNet gradient differs from eager by {error:.2e} (relative)"
    assert set(compiled.module.unet.state_dict()) == set(eager.module.unet.state_dict())
    compiled.fit()
    assert Zero123Pipeline.from_pretrained(compiled.export(tmp_path / "export")).unet is not None


def test_augment_views_mirrors_and_reorders_channels():
    rng = np.random.default_rng(0)
    views = torch.from_numpy(rng.integers(0, 255, (4, 5, 6, 3), dtype=np.uint8))
    out = augment_views(views, torch.tensor([0, 1, 2, 11]))
    assert torch.equal(out[0], views[0])
    assert torch.equal(out[1], views[1].flip(1))  # left-right: the width axis
    assert torch.equal(out[2], views[2][..., [0, 2, 1]])  # code 2: the second RGB order, not mirrored
    assert torch.equal(out[3], views[3][..., [2, 1, 0]].flip(1))  # code 11: the last order, mirrored
    white = torch.full((12, 5, 6, 3), 255, dtype=torch.uint8)
    assert torch.equal(augment_views(white, torch.arange(12)), white)  # the background stays white
    assert set(AUGMENTATIONS.values()) == {1, 2, 12}


def test_a_mirrored_pair_is_the_mirrored_world():
    """Mirroring the world through the vertical plane of the input camera leaves that camera in place and
    moves the target to azimuth 2*a_in - a_t: every point lands at the mirrored pixel (u -> size - u) in
    both views, and the pose vector differs only by the sign of sin(d_azimuth) (what augment does)."""
    rng = np.random.default_rng(3)
    size = 64
    points = rng.uniform(-0.5, 0.5, (50, 3))
    for cams in (sample_reference_cameras(rng, 2) for _ in range(5)):
        cam_in, cam_t = cams[0], cams[1]
        polar_in, az_in, r_in = spherical_of_camera(cam_in)
        polar_t, az_t, r_t = spherical_of_camera(cam_t)
        normal = np.array([-math.sin(az_in), math.cos(az_in), 0.0])
        mirror = np.eye(3) - 2 * np.outer(normal, normal)
        mirrored_t = look_at(spherical_to_cartesian(polar_t, 2 * az_in - az_t, r_t))
        for cam, cam_mirrored in ((cam_in, cam_in), (cam_t, mirrored_t)):
            uv = project_points(points, cam, size)
            uv_m = project_points(points @ mirror.T, cam_mirrored, size)
            np.testing.assert_allclose(uv_m[:, 0], size - uv[:, 0], atol=1e-6)
            np.testing.assert_allclose(uv_m[:, 1], uv[:, 1], atol=1e-6)
        t = relative_pose_vectors(cam_t[None], cam_in[None])[0]
        t_m = relative_pose_vectors(mirrored_t[None], cam_in[None])[0]
        np.testing.assert_allclose(t_m, t * np.array([1, -1, 1, 1]), atol=1e-9)


def test_augmented_batches_and_their_latent_cache(tmp_path):
    """augmentations=1 draws exactly the old pairs; with codes, both views are augmented alike, the pose is
    mirrored with them, and the cache row of each flat index is the augmented view's encoding."""
    images, poses = _arrays()
    batcher = PairBatcher(images, poses)
    plain = batcher.batch(step=3, batch_size=24)
    assert all(torch.equal(plain[k], batcher.batch(step=3, batch_size=24, augmentations=1)[k]) for k in plain)
    aug = batcher.batch(step=3, batch_size=24, augmentations=12)
    code = aug["target_index"] // (5 * 4)
    assert len(set(code.tolist())) > 4 and torch.equal(aug["target_index"] % 20, plain["target_index"])
    sign = torch.where(code % 2 == 1, -1.0, 1.0)
    torch.testing.assert_close(aug["pose"][:, 1], plain["pose"][:, 1] * sign)
    torch.testing.assert_close(aug["pose"][:, [0, 2, 3]], plain["pose"][:, [0, 2, 3]])
    for key, index in (("cond", "cond_index"), ("target", "target_index")):
        raw = batcher.images.reshape(-1, 64, 64, 3)[plain[index]]
        torch.testing.assert_close(aug[key], (augment_views(raw, code).movedim(-1, -3).float() / 127.5 - 1))
    trainer = Trainer(_config(tmp_path, augment="mirror+rgb"), arrays=(images, poses))
    mean, _ = trainer.latent_cache
    assert mean.shape[0] == 12 * 20
    dist = trainer.vae.encode(aug["target"]).latent_dist
    torch.testing.assert_close(mean[aug["target_index"]], dist.mean, atol=1e-5, rtol=1e-4)
    trainer.fit()
    assert trainer.step == 4
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="flip")
