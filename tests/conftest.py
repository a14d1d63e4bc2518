"""Shared fixtures: one tiny random-weight pipeline for the whole session, its saved folder, the peer kit.

The pipeline is shared, so a test that changes its state (fast path, pose encoding, framing) restores it
in a ``finally`` block.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from zero1to3.pipeline import Zero123Pipeline


@pytest.fixture(scope="session")
def tiny_pipe() -> Zero123Pipeline:
    """The ``tiny`` preset with random weights (seed 0) on the CPU, in float32."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return Zero123Pipeline.from_preset("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipe: Zero123Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_pipe`` saved in the diffusers layout, for commands that load a model folder."""
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipe.save_pretrained(path)
    return path


#: The authors' outputs on a tiny checkpoint (SPEC §9), beside the checkout.
PEER_KIT = Path(__file__).resolve().parents[2] / "shared" / "peer-kit"


@pytest.fixture(scope="session")
def peer_kit() -> Path:
    """The peer kit folder. Missing: the faithfulness tests fail under CI (``CI=true``), where the kit is
    always there, and skip on a developer's machine that lacks it."""
    if (PEER_KIT / "tiny.ckpt").is_file():
        return PEER_KIT
    message = f"peer kit not found at {PEER_KIT} (it lives in ../shared beside the checkout)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
