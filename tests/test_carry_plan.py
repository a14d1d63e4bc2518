"""scripts/carry_plan.py: device-call carry groups within the byte and path limits."""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "carry_plan.py"
spec = importlib.util.spec_from_file_location("carry_plan", SCRIPT)
carry_plan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(carry_plan)

SIZES = {"a": 6, "b": 5, "c": 4, "d": 3, "e": 2}


def test_first_fit_decreasing_by_hand() -> None:
    assert carry_plan.plan_calls(SIZES, budget=10) == [["a", "c"], ["b", "d", "e"]]
    assert carry_plan.plan_calls(SIZES, budget=10, max_paths=2) == [["a", "c"], ["b", "d"], ["e"]]


def test_pinned_paths_open_the_first_call_and_limits_hold() -> None:
    calls = carry_plan.plan_calls(SIZES, budget=10, first=("e",))
    assert calls[0][0] == "e"
    assert sorted(n for call in calls for n in call) == sorted(SIZES)
    assert all(sum(SIZES[n] for n in call) <= 10 for call in calls)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="over one call's budget.*a"):
        carry_plan.plan_calls(SIZES, budget=5)
    with pytest.raises(ValueError, match="not in the list: z"):
        carry_plan.plan_calls(SIZES, budget=10, first=("z",))
    with pytest.raises(ValueError, match="do not fit one call"):
        carry_plan.plan_calls(SIZES, budget=10, first=("a", "b"))


def test_sizes_count_file_contents(tmp_path: Path) -> None:
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "x.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "pack" / "sub").mkdir()
    (tmp_path / "pack" / "sub" / "y.bin").write_bytes(b"\0" * 234)
    assert carry_plan.folder_bytes(tmp_path / "pack") == 1234
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("pack/\n")
    (tmp_path / "code.py").write_text("print(1)\n")
    assert carry_plan.tree_bytes(tmp_path) == len("pack/\n") + len("print(1)\n")  # the ignored pack is not tree
