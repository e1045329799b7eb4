"""A small declarative checker that turns TOML tables into frozen dataclasses.

Every problem is collected with the dotted path of its key, so a person fixing a
config sees all of them at once instead of one per restart.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Raised with every problem found in a config file."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)")

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s) in the configuration:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


Check = Callable[[Any, "Context"], Any]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    check: Check | None = None,
    doc: str = "",
    raw: type | None = None,
    keys: tuple[str, ...] | None = None,
):
    """Declare a config key: its default, an optional check/converter and a line of help.

    `raw` is the TOML type to expect when `check` converts it into another type (a time
    zone name into a ZoneInfo, say); a default is given already converted. `keys` lists
    the keys a table-valued setting may have.
    """
    meta = {"check": check, "doc": doc, "raw": raw, "keys": keys}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Context:
    """What a check may need to know (the file's folder, whether secrets are read), and
    the list of problems found so far."""

    def __init__(self, base_dir: Path, secrets: bool = True):
        self.base_dir = base_dir
        self.secrets = secrets  # False: a service that reads no secret file skips them
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        if len(message) > MAX_MESSAGE:  # a long value quoted: keep the start and the fix
            message = message[: MAX_MESSAGE // 2] + " … " + message[-MAX_MESSAGE // 2 :]
        self.problems.append(Problem(path, message))


MAX_MESSAGE = 600  # characters of one problem's message
MAX_TEXT = 4096  # characters of any string setting: a path's most, far beyond any name
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Invalid(Exception):
    """A check's way to say "this value is wrong, and here is why"."""


_TOML_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def build(cls: type, data: Any, ctx: Context, path: str = "") -> Any:
    """Build dataclass `cls` from a TOML table, recording problems in `ctx`.

    Returns None when the table had problems (the caller stops before using it).
    """
    if not isinstance(data, dict):
        ctx.add(path, f"expected a table, found {_describe(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    before = len(ctx.problems)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1) if len(key) <= 64 else []
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(fields)}"
            ctx.add(_join(path, key), f"unknown key; {hint}")
    values = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                doc = f.metadata.get("doc")
                ctx.add(key_path, "missing; " + (doc or "this key is required"))
            continue
        allowed = f.metadata.get("keys")
        if allowed and isinstance(data[name], dict):
            for key in data[name]:
                if key not in allowed:
                    ctx.add(_join(key_path, key), f"unknown key; use {', '.join(allowed)}")
        hint = f.metadata.get("raw") or hints[name]
        values[name] = _convert(hint, data[name], f.metadata.get("check"), ctx, key_path)
    if len(ctx.problems) > before:
        return None
    return cls(**values)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _PLAIN_KEY.fullmatch(key):
        # Quoted as TOML would, with every control, formatting (bidi) and non-ASCII
        # character escaped: a key is shown to a person, never acted out by a terminal.
        key = json.dumps(key if len(key) <= 64 else key[:60] + "…")
    return f"{path}.{key}" if path else key


def _convert(hint: Any, value: Any, check: Check | None, ctx: Context, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, ctx, path)
    if origin is tuple:
        if not isinstance(value, list):
            ctx.add(path, f"expected a list, found {_describe(value)}")
            return None
        item = args[0]
        return tuple(_convert(item, v, check, ctx, _join(path, i)) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            ctx.add(path, f"expected a table, found {_describe(value)}")
            return None
        return {k: _convert(args[1], v, check, ctx, _join(path, k)) for k, v in value.items()}
    expected = Path if hint is Path else hint
    raw_type = str if expected is Path else expected
    ok = isinstance(value, raw_type) and not (raw_type is int and isinstance(value, bool))
    if raw_type is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        ctx.add(
            path,
            f"expected {_TOML_NAMES.get(raw_type, raw_type.__name__)}, found {_describe(value)}",
        )
        return None
    if raw_type is str and len(value) > MAX_TEXT:
        ctx.add(path, f"too long ({len(value)} characters); at most {MAX_TEXT}")
        return None
    if expected is Path:
        if not value.strip():
            ctx.add(path, "empty; give a file's path")
            return None
        if "\x00" in value:
            ctx.add(path, "a path cannot hold a NUL character (\\u0000); give a file's path")
            return None
        value = Path(value) if Path(value).is_absolute() else ctx.base_dir / value
    if check is not None:
        try:
            return check(value, ctx)
        except Invalid as exc:
            ctx.add(path, str(exc))
            return None
    return value
