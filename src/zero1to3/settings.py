"""The one config mechanism: dataclass fields carry their help, and one mapper turns them into CLI flags.

A field declared with :func:`option` knows its help text (and optionally its flag name, choices and a
mutually exclusive group). :func:`add_options` adds a flag per such field, showing the default;
:func:`config_from_args` builds the dataclass back from the parsed flags, taking, for every flag not given
on the command line, the value of a settings file (``--config run.json``, e.g. a run's own settings) or
else the field's default. So ``train``, ``recon`` and ``bench`` cannot drift from their configs, and a
run's settings file reproduces the run. Torch-free, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The value of a flag that was not given (so a settings file or the field's default applies).
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET", "__bool__": lambda self: False})()


class SettingsError(ValueError):
    """A settings file or flag combination that cannot describe a run (one line)."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           choices: typing.Sequence[Any] | None = None, exclusive: str | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its CLI help; ``flag`` overrides ``--field-name``; fields sharing an
    ``exclusive`` group name cannot both be given on one command line."""
    metadata = {"help": help, "flag": flag, "choices": tuple(choices) if choices else None, "exclusive": exclusive}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are CLI options (declared with :func:`option`)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _argument_spec(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """argparse keywords (type, nargs, action) for a field's type; a list that may be empty (optional, or
    empty by default) takes ``*`` values, others ``+``."""
    may_be_empty = _unwrap_optional(hint) is not hint or not _default(f)
    hint = _unwrap_optional(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": args[0], "nargs": "*" if may_be_empty else "+"}
        return {"type": args[0], "nargs": len(args)}
    if hint in (int, float, str):
        return {"type": hint}
    raise TypeError(f"{f.name}: no CLI mapping for type {hint!r}")


def _show(value: Any) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                skip: typing.Collection[str] = ()) -> None:
    """One flag per :func:`option` field of ``cls``, its help ending with the default."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        spec = _argument_spec(f, hints[f.name])
        if f.metadata.get("choices"):
            spec["choices"] = f.metadata["choices"]
        help_text = f"{f.metadata['help']} (default: {_show(_default(f))})"
        target = parser
        if f.metadata.get("exclusive"):
            key = f.metadata["exclusive"]
            if key not in groups:
                groups[key] = parser.add_mutually_exclusive_group()
            target = groups[key]
        if spec.get("action") is None and "choices" not in spec:
            spec["metavar"] = flag_of(f).lstrip("-").upper().replace("-", "_")
        target.add_argument(flag_of(f), dest=f.name, default=UNSET, help=help_text, **spec)


def add_config_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="FILE.json",
                        help="settings file to start from (a run's own config.json / settings.json reproduces "
                             "it); flags given on the command line override its values")


def read_settings(path: str | Path, cls: type) -> dict[str, Any]:
    """The field values of ``cls`` in a JSON settings file: its top level, or its ``config`` entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object of settings")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) for {cls.__name__}: {', '.join(unknown)}")
    return data


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The :func:`option` fields of ``cls`` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in cli_fields(cls)
            if getattr(args, f.name, UNSET) is not UNSET}


def config_from_args(cls: type[T], args: argparse.Namespace, base: typing.Mapping[str, Any] | None = None,
                     **overrides: Any) -> T:
    """``cls`` from flags given, then the ``--config`` file, then ``base`` (a named preset's values), then the
    fields' defaults (``overrides`` win over all)."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        values.update(read_settings(args.config, cls))
    values.update(given(args, cls))
    values.update(overrides)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():  # JSON has lists where the dataclass has tuples
        if isinstance(value, list) and typing.get_origin(_unwrap_optional(hints[name])) is tuple:
            values[name] = tuple(value)
    return cls(**values)
