"""Every visible string is translated in every shipped language, and the screens use it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from conftest import ROOT, visitor_form, write_space_config

from kiosk import create_app
from spacekiosk import config
from spacekiosk.config import LANGUAGES, PURPOSE_LABELS

KIOSK = ROOT / "kiosk"
CATALOGUES = KIOSK / "translations"
SHIPPED = [lang for lang in LANGUAGES if lang not in ("en", "es_CO")]  # en is the source
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def source_strings() -> set[str]:
    """Every translatable string in the templates and the kiosk's Python, as Babel sees it."""
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(KIOSK),
        method_map,
        keywords={"_": None, "_l": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None},
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _key(value):
    return value if isinstance(value, str) else tuple(value)


def catalogue(lang: str):
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=lang)


def test_the_catalogue_folders_are_named_the_way_babel_normalises_them():
    folders = sorted(p.name for p in CATALOGUES.iterdir() if p.is_dir())
    assert folders == sorted(SHIPPED)
    for name in folders:
        assert str(Locale.parse(name)) == name


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_string_is_translated(lang):
    cat = catalogue(lang)
    strings = source_strings()
    assert len(strings) > 50
    missing, bad = [], []
    for msgid in strings:
        message = cat.get(msgid)
        forms = message.string if message else None
        forms = forms if isinstance(forms, tuple) else (forms,)
        if message is None or message.fuzzy or not all(forms):
            missing.append(msgid)
            continue
        expected = set(PLACEHOLDER.findall(msgid if isinstance(message.id, str) else message.id[0]))
        if any(set(PLACEHOLDER.findall(form)) != expected for form in forms):
            bad.append(msgid)
    assert not missing, f"untranslated in {lang}: {missing}"
    assert not bad, f"placeholders differ in {lang}: {bad}"


@pytest.mark.parametrize("lang", SHIPPED)
def test_the_compiled_catalogue_is_up_to_date(lang):
    out = io.BytesIO()
    write_mo(out, catalogue(lang))
    out.seek(0)
    fresh = {_key(m.id): _key(m.string) for m in read_mo(out) if m.id}
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.mo", "rb") as fh:
        shipped = {_key(m.id): _key(m.string) for m in read_mo(fh) if m.id}
    assert shipped == fresh, "run scripts/translations to compile the catalogues"


def test_a_language_the_space_does_not_offer_falls_back_to_its_default(tmp_path):
    app = create_app(config.load(write_space_config(tmp_path, broker_port=1)), {"TESTING": True})
    client = app.test_client()
    client.set_cookie("lang", "sw")  # the test space offers en and el
    page = client.get("/").text
    assert '<html lang="en">' in page and catalogue("sw").get("Sign in").string not in page
    assert client.get("/lang/sw").status_code == 404
    client.get("/lang/el")
    assert catalogue("el").get("Sign in").string in client.get("/").text
    client.get("/reset")  # idle or Done: back to the space's default
    assert '<html lang="en">' in client.get("/").text


def test_every_pilot_language_reaches_the_screen(tmp_path):
    for lang in [*SHIPPED, "es_CO"]:
        toml = write_space_config(tmp_path / lang, broker_port=1)
        toml.write_text(
            toml.read_text().replace('languages = ["en", "el"]', f'languages = ["{lang}", "en"]')
        )
        app = create_app(config.load(toml), {"TESTING": True})
        client = app.test_client()
        cat = catalogue("es" if lang == "es_CO" else lang)
        page = client.get("/").text
        assert f'<html lang="{lang.replace("_", "-")}">' in page
        assert cat.get("Sign in").string in page, lang
        done = client.post("/sign-in/new", data=visitor_form("Ana Pérez")).text
        assert cat.get("Welcome, %(name)s").string.replace("%(name)s", "Ana") in done, lang


# What a macro may write inside a tag: attributes with values, and boolean ones.
_ATTRIBUTE = r'(?:[\w-]+="[^"]*"|autofocus|required|disabled|checked|selected|hidden|readonly)'
ATTRIBUTES = re.compile(rf"\s*{_ATTRIBUTE}(?:\s+{_ATTRIBUTE})*\s*")


def test_no_template_shows_english_outside_the_catalogue():
    """A visible English word in a template that is not inside _() is a string no one
    can translate."""
    offenders = []
    for path in (KIOSK / "templates").rglob("*.html"):
        text = re.sub(r"{[{%#].*?[}%#]}", "", path.read_text(), flags=re.S)
        text = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S)
        for chunk in re.findall(r">([^<>]+)<", text):
            if ATTRIBUTES.fullmatch(chunk):
                continue  # a macro that writes a tag's attributes, not text anyone reads
            if re.search(r"[A-Za-z]{2,}", chunk):
                offenders.append(f"{path.name}: {chunk.strip()!r}")
    assert not offenders, offenders


def test_the_pot_lists_what_the_code_says():
    with open(KIOSK / "messages.pot", "rb") as fh:
        pot = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}
    assert pot == source_strings(), "run scripts/translations"


def test_catalogues_are_where_the_app_looks():
    from kiosk import TRANSLATIONS

    assert Path(TRANSLATIONS) == CATALOGUES


def test_the_kiosk_and_the_central_pages_call_each_purpose_the_same(tmp_path):
    """The central pages show the core's English labels; the kiosk translates its own
    copy of the same words, which must stay the same words."""
    app = create_app(config.load(write_space_config(tmp_path, broker_port=1)))
    with app.test_request_context("/", headers={"Cookie": "lang=en"}):
        from kiosk.i18n import PURPOSE_NAMES

        assert {key: str(name) for key, name in PURPOSE_NAMES.items()} == PURPOSE_LABELS
