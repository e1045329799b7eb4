"""Config files as a careless or hostile hand could write them: properties over a space's
and the collector's config.

Valid TOML with wrong types, absurd values, unknown keys, hostile strings and missing
keys; bytes that are not TOML or not UTF-8. Whatever the file, the loader answers with
a config or with every problem named by its key (`ConfigError`), never another
exception; `spacekiosk check-config` prints those problems and exits 78, never a
traceback; and no problem carries a control or bidi character to the operator's terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from datetime import date, datetime, time
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacekiosk import cli, config
from spacekiosk.config import ConfigError
from spacekiosk.demo import collector_config, space_config

FOLDER = Path(tempfile.mkdtemp(prefix="spacekiosk-config-fuzz-"))
(FOLDER / "mqtt-password").write_text("secret\n")
(FOLDER / "collector-password").write_text("secret\n")
(FOLDER / "collector-token").write_text("token\n")
EXTRA = """
[[events]]
name = "Hack night"
date = "2026-12-01"
hours = "18:00-21:00"
"""
SYNC = f'http_url = "https://collector.example.org"\ntoken_file = "{FOLDER / "collector-token"}"\n'


def _bases() -> dict[str, dict]:
    demo_space = space_config(FOLDER, 8080, 1883, 10).replace("[sync]\n", "[sync]\n" + SYNC)
    central = tomllib.loads((ROOT / "config" / "central.toml").read_text())
    central["central"]["proxies"] = 1  # commented out in the file; the installer sets it
    return {
        "madrid": tomllib.loads((ROOT / "config" / "madrid.toml").read_text()),
        "demo-space": tomllib.loads(demo_space + EXTRA),
        "central": central,
        "demo-central": tomllib.loads(collector_config(FOLDER, 8090, 1883)),
    }


BASES = _bases()


@pytest.fixture(scope="module", autouse=True)
def _clean_up():
    yield
    shutil.rmtree(FOLDER, ignore_errors=True)


FILE_LEVEL = (
    "file not found",
    "cannot read",
    "the file is not UTF-8",
    "not valid TOML",
    "expected a [",
)
# Settings are not values of any size: an int beyond this is out of every key's range.
ABSURD = 10**7


# --- writing TOML (tomllib reads it but does not write it) ---


def toml_string(text: str) -> str:
    """A basic string, everything but plain ASCII escaped. A lone surrogate comes out as
    an escape TOML refuses: a file that is not TOML, which is a case to try too."""
    out = []
    for ch in text:
        if " " <= ch <= "~" and ch not in '"\\':
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def dump(data: dict) -> str:
    return "\n".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items()) + "\n"


# --- where a problem should be named: the loader's way of writing a key's path ---


def joined(path: tuple) -> str:
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            shown = (
                key
                if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key)
                else json.dumps(key if len(key) <= 64 else key[:60] + "…")
            )
            out += f".{shown}" if out else shown
    return out


def places(value, path: tuple = ()) -> list[tuple]:
    """Every key and list item in a parsed config, as paths."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += places(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += places(inner, (*path, i))
    return found


def at(data, path: tuple):
    for key in path:
        data = data[key]
    return data


MISSING = object()


def in_base(name: str, path: tuple, otherwise):
    """The base's value at `path`, or `otherwise` where the base has none."""
    data = BASES[name]
    for key in path:
        inside = (isinstance(data, dict) and key in data) or (
            isinstance(data, list) and isinstance(key, int) and key < len(data)
        )
        if not inside:
            return otherwise
        data = data[key]
    return data


def kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "int" if isinstance(value, int) else "float"
    return type(value).__name__


# --- hostile values ---

HOSTILE_TEXT = [
    "", " ", "\x00", "nul\x00inside", "\x1b[2J\x1b[31mred", "\u202eevil\u202c", "\r\nX: y",
    "../../../../etc/passwd", "/dev/zero", "a" * 5000, "²", "٣", "Europe", "UTC", "zh-TW",
    "collector", "collector-2", "0.0.0.0:99999", "127.0.0.1:²", "[::1]:8080", "http://",
    "mqtts://[::1", "24:00-25:00", "09:00-08:00", "9999-99-99", "NaN", "null", "'; DROP TABLE",
    "🦄", "\ufeffbom", "\udcff",
]  # fmt: skip
texts = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=40)
scalars = st.one_of(
    texts,
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, ABSURD, -ABSURD]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
unknown_keys = st.sampled_from(["colour", "idd", "\x1b[2J", "\u202ekey", "a" * 300, "0"]) | texts


@st.composite
def mutated(draw):
    """(name of the base, its data mutated, what each mutation requires to be named)."""
    name = draw(st.sampled_from(sorted(BASES)))
    data = json.loads(json.dumps(BASES[name]))  # a deep copy (the bases hold no dates)
    named: dict[tuple, str] = {}  # path: "" for any problem there or inside, or words

    def forget(path: tuple) -> None:  # a later mutation there undoes what was named
        for done in [d for d in named if d[: len(path)] == path]:
            del named[done]

    def forget_inside(path: tuple) -> None:
        for done in [d for d in named if len(d) > len(path) and d[: len(path)] == path]:
            del named[done]

    for _ in range(draw(st.integers(1, 3))):
        spots = places(data)
        op = draw(st.sampled_from(["set", "set", "add", "delete"]))
        if op == "set" and spots:
            path = draw(st.sampled_from(spots))
            old, new = in_base(name, path, MISSING), draw(values)
            at(data, path[:-1])[path[-1]] = new
            forget(path)
            if old is MISSING:  # inside a value made up by an earlier mutation
                continue
            if kind(old) != kind(new) or (
                isinstance(new, int) and not isinstance(new, bool) and abs(new) >= ABSURD
            ):
                named[path] = ""
        elif op == "add":
            tables = [()] + [p for p in spots if isinstance(at(data, p), dict)]
            path = draw(st.sampled_from(tables))
            table = at(data, path)
            key = draw(unknown_keys.filter(lambda k, t=table: k not in t))
            table[key] = draw(values)
            # Named when the table is one of the config's own (not a value made a table)
            # and not a table of free keys. A top-level key beside [space] is named too.
            if path and isinstance(in_base(name, path, None), dict) and path[-1] != "by":
                named[(*path, key)] = "unknown key"
        elif op == "delete" and spots:
            path = draw(st.sampled_from(spots))
            container = at(data, path[:-1])
            del container[path[-1]]
            forget(path)
            if isinstance(container, list):  # the items after it moved up: their places
                forget_inside(path[:-1])  # named before no longer say where they are
    return name, data, [(joined(path), words) for path, words in named.items()]


def check_config(path: Path) -> tuple[int, str, str]:
    """`spacekiosk check-config PATH`, in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.cmd_check_config(argparse.Namespace(config=str(path)))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def assert_answered(path: Path) -> ConfigError | None:
    """The loader's answer is a config or a ConfigError whose every problem is named and
    shown safely; check-config agrees, with 0 or 78."""
    try:
        config.load(path)
        problem = None
    except ConfigError as exc:
        problem = exc
    with contextlib.suppress(ConfigError):
        config.load(path, secrets=False)  # the kiosk's and the sensors' way to load it
    code, out, err = check_config(path)
    if problem is None:
        assert code == 0 and "OK" in out, err
        return None
    assert code == 78 and err.strip() == problem.report(), (code, out, err)
    assert problem.problems
    for p in problem.problems:
        text = str(p)
        assert text.isprintable(), text  # no control or bidi character reaches a terminal
        assert len(text) <= 800, text
        if not p.path:
            assert p.message.startswith(FILE_LEVEL), p.message
    return problem


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutated())
def test_any_mutated_config_is_loaded_or_refused_naming_each_key(case):
    _name, data, named = case
    path = FOLDER / "mutated.toml"
    path.write_text(dump(data), encoding="utf-8", errors="surrogatepass")
    problem = assert_answered(path)
    paths = [p.path for p in problem.problems] if problem else []
    if problem and any(p.message.startswith(FILE_LEVEL) for p in problem.problems):
        return  # not TOML after all (a lone surrogate), said so: nothing else to name
    for where, words in named:
        if words:
            hits = [p for p in problem.problems if p.path == where] if problem else []
            assert any(words in p.message for p in hits), (where, paths)
        else:  # a value of another type, or absurd: refused, at that key or inside it
            assert problem is not None, where
            assert any(p == where or p.startswith((where + ".", where + "[")) for p in paths), (
                where,
                paths,
            )


@st.composite
def broken_bytes(draw):
    text = dump(BASES[draw(st.sampled_from(sorted(BASES)))]).encode()
    how = draw(st.sampled_from(["insert", "truncate", "replace", "random"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    at_ = draw(st.integers(0, len(text)))
    if how == "truncate":
        return text[:at_]
    junk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"\xff", b"\x00", b"[", b'"']))
    return text[:at_] + junk + text[at_ + (len(junk) if how == "replace" else 0) :]


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=broken_bytes())
def test_bytes_that_are_not_a_config_are_refused_with_a_reason(raw):
    path = FOLDER / "bytes.toml"
    path.write_bytes(raw)
    assert_answered(path)


NESTED = "x = " + "[" * 3000 + "]" * 3000 + "\n"
MADRID = (ROOT / "config" / "madrid.toml").read_text()
DEMO = space_config(FOLDER, 8080, 1883, 10)
HOSTILE_FILES = {  # what a file holds, and what check-config must name
    "nested too deeply": ("[space]\n" + NESTED, "nested too deeply"),
    "a NUL in a path": (
        DEMO.replace(str(FOLDER / "mqtt-password"), "mqtt\\u0000pw"),
        "mqtt.password_file",
    ),
    "a terminal escape as a key": (
        MADRID.replace("capacity =", '"\\u001b[2J" = 1\ncapacity ='),
        'space."\\u001b[2J"',
    ),
    "an absurd number": (MADRID.replace("capacity = 35", "capacity = 1e300"), "space.capacity"),
    "a huge integer": (MADRID.replace("capacity = 35", f"capacity = {10**40}"), "space.capacity"),
    "not UTF-8": (None, "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_check_config_exits_78_without_a_traceback(tmp_path, name):
    text, key = HOSTILE_FILES[name]
    path = tmp_path / "space.toml"
    if text is None:
        path.write_bytes(b"[space]\nname = '\xff\xfe'\n")
    else:
        path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr and "problem(s)" in result.stderr
    assert key in result.stderr
    assert all(line.isprintable() for line in result.stderr.splitlines())
