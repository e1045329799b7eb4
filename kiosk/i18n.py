"""Languages on the kiosk: which one a screen speaks, and the messages visitors read."""

from __future__ import annotations

import functools

from babel import Locale, UnknownLocaleError
from flask import request
from flask_babel import lazy_gettext as _l

from kiosk import space
from kiosk.visits import MAX_NAME

LANG_COOKIE = "lang"

# Messages for the codes kiosk.visits raises, in the visitor's language.
MESSAGES = {
    "control_characters": _l(
        "Please use only letters, marks, numbers and punctuation in your name."
    ),
    "empty_name": _l("Please enter your name."),
    "long_name": _l("Please use at most %(num)d characters for your name.", num=MAX_NAME),
    "bad_email": _l("That e-mail address does not look right. Leave it empty if you like."),
    "bad_pin": _l("Your PIN must be four digits."),
    "pin_mismatch": _l("The two PINs are not the same. Please try again."),
    "wrong_pin": _l("That PIN is not right. Please try again."),
    "pin_resting": _l("Too many wrong PINs. Please wait a few minutes, or ask a volunteer."),
    "guidelines": _l("Please accept the participation guidelines to sign in."),
    "guidelines_changed": _l("The guidelines have changed. Please read and accept them."),
    "unknown_visitor": _l("We could not find you. Please sign in as a new visitor."),
    "unknown_visit": _l("We could not find that visit."),
    "bad_purpose": _l("Please choose why you are here."),
    "store": _l("We could not save that just now. Please try again, or tell a volunteer."),
    "bad_form": _l("Something in that form was not right. Please try again."),
}

HTTP_MESSAGES = {
    400: _l("Something in that form was not right. Please try again."),
    404: _l("This page does not exist."),
    405: _l("This page does not exist."),
    413: _l("That was too much to send. Please try again."),
    500: _l("Something went wrong on our side. Please try again, or tell a volunteer."),
}

PURPOSE_NAMES = {
    "cowork": _l("Coworking or a project"),
    "event": _l("An event"),
    "meeting": _l("A meeting"),
    "other": _l("Something else"),
}


def select_locale() -> Locale:
    """The cookie's language if the space offers it, else (on a phone) the browser's
    best match, else the space's first language."""
    languages = space.config().space.languages  # with the settings the admins saved
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen not in languages:
        chosen = languages[0]
        if request.cookies.get("device") == "phone":
            for tag, _quality in request.accept_languages:
                if match := _closest(tag, languages):
                    chosen = match
                    break
    return _parsed(chosen)


@functools.cache
def _parsed(code: str) -> Locale:
    # Parsed once: Flask-Babel would otherwise parse the same string on every request.
    return Locale.parse(code)


def _closest(tag: str, offered) -> str | None:
    """The offered locale a browser's language tag means: zh-TW is zh_Hant_TW, es-MX is
    es (or es_CO if that is all the space offers)."""
    try:
        wanted = Locale.parse(tag, sep="-")
    except (ValueError, TypeError, UnknownLocaleError):
        return None  # a browser's header is input like any other
    if str(wanted) in offered:
        return str(wanted)
    same = [code for code in offered if _parsed(code).language == wanted.language]
    return same[0] if same else None


def native_name(code: str) -> str:
    """A language's name in itself: what a visitor looks for on the switcher."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]
