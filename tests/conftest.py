"""Shared fixtures: one tiny random-weight pipeline for the whole session, and its saved folder.

The pipeline is shared, so a test that changes its state (fast path, pose encoding, framing) restores it
in a ``finally`` block.
"""

from __future__ import annotations

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
