"""One config mechanism: flags generated from dataclass fields, settings files fed back in, stage-specific configs."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from zero1to3.benchmarking.sampling import BenchConfig
from zero1to3.cli import build_parser
from zero1to3.cli import train as train_cli
from zero1to3.cli.common import CLIError
from zero1to3.recon.config import ReconConfig
from zero1to3.settings import SettingsError, add_options, cli_fields, config_from_args, flag_of, read_settings
from zero1to3.training import TrainConfig, VAETrainConfig


@pytest.mark.parametrize("cls", [TrainConfig, VAETrainConfig, ReconConfig, BenchConfig])
def test_every_field_is_an_option_with_help_and_default(cls) -> None:
    assert [f.name for f in cli_fields(cls)] == [f.name for f in dataclasses.fields(cls)]
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    actions = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(cls):
        assert f.metadata["help"] and "(default: " in actions[f.name].help, f.name
    # no flags given: the dataclass's own defaults
    assert config_from_args(cls, parser.parse_args([])) == cls()



@pytest.mark.parametrize("command", ["train", "recon", "bench"])
def test_generated_help_renders(command, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert "--config" in text and text.count("(default: ") >= 20


def test_recon_flags_map_to_fields_and_keep_their_names(tmp_path) -> None:
    args = build_parser().parse_args(["recon", "in.png", "-o", "o", "--guidance", "5", "--sds-weight", "0",
                                      "--no-preprocess", "--grid-resolutions", "16", "32", "--milestones", "0",
                                      "0.5", "--render-resolutions", "16", "32", "--iso", "0.3"])
    from zero1to3.cli.recon import build_config

    cfg = build_config(args)
    assert (cfg.guidance_scale, cfg.w_sds, cfg.preprocess, cfg.iso_level) == (5.0, 0.0, False, 0.3)
    assert cfg.grid_resolutions == (16, 32) and cfg.milestones == (0.0, 0.5)
    assert flag_of(next(f for f in dataclasses.fields(ReconConfig) if f.name == "fov_deg")) == "--fov"


def test_settings_file_reproduces_a_run_and_flags_override(tmp_path) -> None:
    """A recon run's settings.json (config under "config") fed back with --config gives the same ReconConfig."""
    original = ReconConfig(steps=7, batch_size=2, grid_resolutions=(8, 16), render_resolutions=(8, 16),
                           milestones=(0.0, 0.5), w_near=0.0, elevation_deg=12.5)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"config": original.to_dict(), "timings": {"total": 1.0}}))
    parser = build_parser()
    from zero1to3.cli.recon import build_config

    assert build_config(parser.parse_args(["recon", "x.png", "-o", "o", "--config", str(path)])) == original
    changed = build_config(parser.parse_args(["recon", "x.png", "-o", "o", "--config", str(path), "--steps", "9"]))
    assert changed == dataclasses.replace(original, steps=9)
    # a training run's config.json, likewise
    run = TrainConfig(data="d", batch_size=3, lr_schedule="cosine", max_minutes=2.5)
    (tmp_path / "config.json").write_text(run.to_json())
    args = parser.parse_args(["train", "--config", str(tmp_path / "config.json")])
    assert config_from_args(TrainConfig, args) == run


def test_bad_settings_files_are_one_line_errors(tmp_path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"steps": 3, "no_such_knob": 1}))
    with pytest.raises(SettingsError, match="no_such_knob"):
        read_settings(tmp_path / "bad.json", ReconConfig)
    with pytest.raises(SettingsError, match="not found"):
        read_settings(tmp_path / "missing.json", ReconConfig)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SettingsError, match="cannot read"):
        read_settings(tmp_path / "broken.json", ReconConfig)


def test_vae_stage_uses_batch_size_and_learning_rate(tmp_path, monkeypatch) -> None:
    """``train --stage vae`` builds VAETrainConfig from every flag it shares, its own defaults for the rest."""
    seen = {}
    monkeypatch.setattr(train_cli, "train_vae", lambda config: seen.setdefault("config", config) and "vae/")
    parser = build_parser()
    args = parser.parse_args(["train", "--stage", "vae", "--data", str(tmp_path), "--batch-size", "3",
                              "--learning-rate", "0.01", "--kl-weight", "0.5", "--max-steps", "4"])
    assert args.func(args) == 0
    assert seen["config"] == VAETrainConfig(data=str(tmp_path), batch_size=3, learning_rate=0.01, kl_weight=0.5,
                                            max_steps=4)
    args = parser.parse_args(["train", "--stage", "vae", "--data", str(tmp_path), "--init-from", "m"])
    with pytest.raises(CLIError, match="--init-from"):
        args.func(args)
    args = parser.parse_args(["train", "--data", str(tmp_path), "--kl-weight", "0.5"])
    with pytest.raises(CLIError, match="--kl-weight"):
        args.func(args)


def test_bench_config_from_flags_and_its_json(tmp_path) -> None:
    from zero1to3.cli.bench import config_from_args as bench_config

    parser = build_parser()
    cfg = bench_config(parser.parse_args(["bench", "--device", "cpu", "--views", "1", "2", "--steps", "3",
                                          "--no-quality", "--variants", "--time-budget", "9"]))
    assert cfg == BenchConfig(device="cpu", views=(1, 2), steps=3, quality=False, variants=(), time_budget_s=9.0)
    (tmp_path / "b.json").write_text(json.dumps({"rows": [], "config": dataclasses.asdict(cfg)}))
    assert bench_config(parser.parse_args(["bench", "--config", str(tmp_path / "b.json")])) == cfg
    with pytest.raises(CLIError, match="exclude"):
        bench_config(parser.parse_args(["bench", "--random-weights", "--model", "m"]))


def test_recon_preset_is_the_base_under_settings_file_and_flags(tmp_path) -> None:
    """--preset fills what neither the settings file nor a flag gives: preset < --config < flags."""
    from zero1to3.cli.recon import build_config
    from zero1to3.recon.config import RECON_PRESETS

    (tmp_path / "s.json").write_text(json.dumps({"steps": 9, "batch_size": 3}))
    args = build_parser().parse_args(["recon", "x.png", "-o", "o", "--preset", "fast", "--config",
                                      str(tmp_path / "s.json"), "--batch-size", "5"])
    cfg = build_config(args, "cuda")  # a named preset wins over the device's default (full on a GPU)
    fast = RECON_PRESETS["fast"]
    assert (cfg.steps, cfg.batch_size) == (9, 5)
    assert (cfg.grid_resolutions, cfg.milestones) == (fast["grid_resolutions"], fast["milestones"])
    assert cfg.lr == ReconConfig().lr and fast["steps"] != 9
