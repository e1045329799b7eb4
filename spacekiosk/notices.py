"""What the space tells its chat (docs/notifications.md): the kinds of event, their text
in the space's languages, and the sending itself through Apprise.

The core runs nothing: the sync agent's notifier (`sync/notify.py`) decides when to tell,
and the kiosk's Notifications page sends a test through `send_test`. The texts live here,
not in the kiosk's gettext catalogues, because the sync agent may not import the kiosk.

No message holds personal data — only counts, sensor names and times — unless an admin
turned `personal` on for a target; then an evacuation's message lists who was signed in,
by first name and initial, and nothing else does.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

MAX_URL = 2000  # an Apprise URL with its token fits well within this
MAX_ANSWER = 500  # what is kept of a target's answer or error
MAX_FIELD = 120  # any one value put into a text (a sensor's name, a fault's reason)
SEND_TIMEOUT = 30  # seconds Apprise may take for one target

# The kinds of event, in the order the admin page lists them.
OPENED = "space_opened"
CLOSED = "space_closed"
DOOR_OPEN = "door_left_open"
SENSOR_FAULT = "sensor_fault"
SENSOR_OK = "sensor_recovered"
BACKLOG = "sync_backlog"
CLOCK = "clock_unsynchronised"
DISK = "disk_nearly_full"
EVACUATION = "evacuation_started"
KINDS = (OPENED, CLOSED, DOOR_OPEN, SENSOR_FAULT, SENSOR_OK, BACKLOG, CLOCK, DISK, EVACUATION)
EVENTS = KINDS  # what a target's `events` list holds (the Notifications page's boxes)

LANGUAGES = ("en", "el", "es", "fil", "hi", "kn", "sw", "zh_Hant_TW")

# Per language: each kind's (title, body), then "test", "late", "repeats", "people".
# Placeholders: {space} {time} {sensor} {reason} {minutes} {oldest} {percent} {count}
# {n} {names}.
TEXTS: dict[str, dict[str, tuple[str, str] | str]] = {
    "en": {
        OPENED: ("{space} is open", "{space} opened at {time}."),
        CLOSED: ("{space} is closed", "{space} closed at {time}."),
        DOOR_OPEN: (
            "Door left open",
            "The door at {space} has stood open since {time} ({minutes} min).",
        ),
        SENSOR_FAULT: (
            "Sensor fault",
            "Sensor {sensor} at {space} is faulty since {time}: {reason}",
        ),
        SENSOR_OK: ("Sensor recovered", "Sensor {sensor} at {space} works again since {time}."),
        BACKLOG: (
            "Usage data not sent",
            "{space} has usage data waiting for over a day (oldest hour {oldest}).",
        ),
        CLOCK: ("Clock not synchronised", "The kiosk's clock at {space} is not synchronised."),
        DISK: ("Disk nearly full", "The kiosk's disk at {space} is {percent}% full."),
        EVACUATION: (
            "Evacuation started",
            "An evacuation started at {space} at {time}; {count} people signed in.",
        ),
        "test": ("Test from {space}", "A test message from the kiosk at {space}."),
        "late": "(late: happened at {time})",
        "repeats": "({n} more changes since)",
        "people": "Signed in: {names}",
    },
    "el": {
        OPENED: ("Ο χώρος {space} άνοιξε", "Ο χώρος {space} άνοιξε στις {time}."),
        CLOSED: ("Ο χώρος {space} έκλεισε", "Ο χώρος {space} έκλεισε στις {time}."),
        DOOR_OPEN: (
            "Η πόρτα έμεινε ανοιχτή",
            "Η πόρτα στο {space} είναι ανοιχτή από τις {time} ({minutes} λεπτά).",
        ),
        SENSOR_FAULT: (
            "Βλάβη αισθητήρα",
            "Ο αισθητήρας {sensor} στο {space} έχει βλάβη από τις {time}: {reason}",
        ),
        SENSOR_OK: (
            "Ο αισθητήρας επανήλθε",
            "Ο αισθητήρας {sensor} στο {space} λειτουργεί ξανά από τις {time}.",
        ),
        BACKLOG: (
            "Δεδομένα χρήσης δεν στάλθηκαν",
            "Το {space} έχει δεδομένα χρήσης σε αναμονή πάνω από μία μέρα "
            "(παλαιότερη ώρα {oldest}).",
        ),
        CLOCK: (
            "Ρολόι μη συγχρονισμένο",
            "Το ρολόι του κιόσκι στο {space} δεν είναι συγχρονισμένο.",
        ),
        DISK: (
            "Ο δίσκος σχεδόν γεμάτος",
            "Ο δίσκος του κιόσκι στο {space} είναι {percent}% γεμάτος.",
        ),
        EVACUATION: (
            "Ξεκίνησε εκκένωση",
            "Ξεκίνησε εκκένωση στο {space} στις {time}· {count} άτομα συνδεδεμένα.",
        ),
        "test": ("Δοκιμή από {space}", "Δοκιμαστικό μήνυμα από το κιόσκι στο {space}."),
        "late": "(καθυστερημένο: συνέβη στις {time})",
        "repeats": "({n} ακόμη αλλαγές από τότε)",
        "people": "Συνδεδεμένοι: {names}",
    },
    "es": {
        OPENED: ("{space} está abierto", "{space} abrió a las {time}."),
        CLOSED: ("{space} está cerrado", "{space} cerró a las {time}."),
        DOOR_OPEN: (
            "Puerta abierta",
            "La puerta de {space} está abierta desde las {time} ({minutes} min).",
        ),
        SENSOR_FAULT: (
            "Fallo de sensor",
            "El sensor {sensor} de {space} falla desde las {time}: {reason}",
        ),
        SENSOR_OK: (
            "Sensor recuperado",
            "El sensor {sensor} de {space} funciona de nuevo desde las {time}.",
        ),
        BACKLOG: (
            "Datos de uso sin enviar",
            "{space} tiene datos de uso esperando más de un día (hora más antigua {oldest}).",
        ),
        CLOCK: ("Reloj sin sincronizar", "El reloj del quiosco de {space} no está sincronizado."),
        DISK: ("Disco casi lleno", "El disco del quiosco de {space} está al {percent}%."),
        EVACUATION: (
            "Evacuación iniciada",
            "Se inició una evacuación en {space} a las {time}; {count} personas registradas.",
        ),
        "test": ("Prueba desde {space}", "Un mensaje de prueba del quiosco de {space}."),
        "late": "(tarde: ocurrió a las {time})",
        "repeats": "({n} cambios más desde entonces)",
        "people": "Registrados: {names}",
    },
    "fil": {
        OPENED: ("Bukas na ang {space}", "Nagbukas ang {space} nang {time}."),
        CLOSED: ("Sarado na ang {space}", "Nagsara ang {space} nang {time}."),
        DOOR_OPEN: (
            "Naiwang bukas ang pinto",
            "Bukas ang pinto ng {space} mula {time} ({minutes} min).",
        ),
        SENSOR_FAULT: (
            "Sira ang sensor",
            "May sira ang sensor {sensor} sa {space} mula {time}: {reason}",
        ),
        SENSOR_OK: (
            "Gumagana na ang sensor",
            "Gumagana na ulit ang sensor {sensor} sa {space} mula {time}.",
        ),
        BACKLOG: (
            "Hindi naipadala ang datos",
            "May datos ng paggamit ang {space} na naghihintay nang higit isang araw "
            "(pinakaluma: {oldest}).",
        ),
        CLOCK: ("Hindi naka-sync ang orasan", "Hindi naka-sync ang orasan ng kiosk sa {space}."),
        DISK: ("Halos puno na ang disk", "{percent}% puno na ang disk ng kiosk sa {space}."),
        EVACUATION: (
            "Nagsimula ang paglikas",
            "Nagsimula ang paglikas sa {space} nang {time}; {count} tao ang naka-sign in.",
        ),
        "test": ("Pagsubok mula sa {space}", "Isang pansubok na mensahe mula sa kiosk ng {space}."),
        "late": "(huli: nangyari nang {time})",
        "repeats": "({n} pang pagbabago mula noon)",
        "people": "Naka-sign in: {names}",
    },
    "hi": {
        OPENED: ("{space} खुल गया है", "{space} {time} बजे खुला।"),
        CLOSED: ("{space} बंद हो गया है", "{space} {time} बजे बंद हुआ।"),
        DOOR_OPEN: (
            "दरवाज़ा खुला रह गया",
            "{space} का दरवाज़ा {time} से खुला है ({minutes} मिनट)।",
        ),
        SENSOR_FAULT: (
            "सेंसर में खराबी",
            "{space} का सेंसर {sensor} {time} से खराब है: {reason}",
        ),
        SENSOR_OK: ("सेंसर ठीक हो गया", "{space} का सेंसर {sensor} {time} से फिर काम कर रहा है।"),
        BACKLOG: (
            "उपयोग डेटा नहीं भेजा गया",
            "{space} का उपयोग डेटा एक दिन से अधिक समय से रुका है (सबसे पुराना घंटा {oldest})।",
        ),
        CLOCK: ("घड़ी सिंक नहीं है", "{space} के कियोस्क की घड़ी सिंक नहीं है।"),
        DISK: ("डिस्क लगभग भर गई", "{space} के कियोस्क की डिस्क {percent}% भर गई है।"),
        EVACUATION: (
            "निकासी शुरू हुई",
            "{space} में {time} बजे निकासी शुरू हुई; {count} लोग साइन इन हैं।",
        ),
        "test": ("{space} से परीक्षण", "{space} के कियोस्क से एक परीक्षण संदेश।"),
        "late": "(देर से: {time} बजे हुआ)",
        "repeats": "(तब से {n} और बदलाव)",
        "people": "साइन इन: {names}",
    },
    "kn": {
        OPENED: ("{space} ತೆರೆದಿದೆ", "{space} {time} ಕ್ಕೆ ತೆರೆಯಿತು."),
        CLOSED: ("{space} ಮುಚ್ಚಿದೆ", "{space} {time} ಕ್ಕೆ ಮುಚ್ಚಿತು."),
        DOOR_OPEN: (
            "ಬಾಗಿಲು ತೆರೆದೇ ಇದೆ",
            "{space} ನ ಬಾಗಿಲು {time} ರಿಂದ ತೆರೆದಿದೆ ({minutes} ನಿಮಿಷ).",
        ),
        SENSOR_FAULT: ("ಸೆನ್ಸರ್ ದೋಷ", "{space} ನ ಸೆನ್ಸರ್ {sensor} {time} ರಿಂದ ದೋಷದಲ್ಲಿದೆ: {reason}"),
        SENSOR_OK: (
            "ಸೆನ್ಸರ್ ಸರಿಯಾಗಿದೆ",
            "{space} ನ ಸೆನ್ಸರ್ {sensor} {time} ರಿಂದ ಮತ್ತೆ ಕೆಲಸ ಮಾಡುತ್ತಿದೆ.",
        ),
        BACKLOG: (
            "ಬಳಕೆಯ ಡೇಟಾ ಕಳುಹಿಸಿಲ್ಲ",
            "{space} ನ ಬಳಕೆಯ ಡೇಟಾ ಒಂದು ದಿನಕ್ಕಿಂತ ಹೆಚ್ಚು ಕಾಯುತ್ತಿದೆ (ಅತ್ಯಂತ ಹಳೆಯ ಗಂಟೆ {oldest}).",
        ),
        CLOCK: ("ಗಡಿಯಾರ ಸಿಂಕ್ ಆಗಿಲ್ಲ", "{space} ನ ಕಿಯೋಸ್ಕ್ ಗಡಿಯಾರ ಸಿಂಕ್ ಆಗಿಲ್ಲ."),
        DISK: ("ಡಿಸ್ಕ್ ಬಹುತೇಕ ತುಂಬಿದೆ", "{space} ನ ಕಿಯೋಸ್ಕ್ ಡಿಸ್ಕ್ {percent}% ತುಂಬಿದೆ."),
        EVACUATION: (
            "ತೆರವು ಆರಂಭವಾಗಿದೆ",
            "{space} ನಲ್ಲಿ {time} ಕ್ಕೆ ತೆರವು ಆರಂಭವಾಯಿತು; {count} ಜನರು ಸೈನ್ ಇನ್ ಆಗಿದ್ದಾರೆ.",
        ),
        "test": ("{space} ನಿಂದ ಪರೀಕ್ಷೆ", "{space} ನ ಕಿಯೋಸ್ಕ್‌ನಿಂದ ಒಂದು ಪರೀಕ್ಷಾ ಸಂದೇಶ."),
        "late": "(ತಡವಾಗಿ: {time} ಕ್ಕೆ ನಡೆದದ್ದು)",
        "repeats": "(ಅಂದಿನಿಂದ ಇನ್ನೂ {n} ಬದಲಾವಣೆಗಳು)",
        "people": "ಸೈನ್ ಇನ್: {names}",
    },
    "sw": {
        OPENED: ("{space} iko wazi", "{space} ilifunguliwa saa {time}."),
        CLOSED: ("{space} imefungwa", "{space} ilifungwa saa {time}."),
        DOOR_OPEN: (
            "Mlango umeachwa wazi",
            "Mlango wa {space} uko wazi tangu saa {time} (dakika {minutes}).",
        ),
        SENSOR_FAULT: (
            "Hitilafu ya kihisi",
            "Kihisi {sensor} cha {space} kina hitilafu tangu saa {time}: {reason}",
        ),
        SENSOR_OK: (
            "Kihisi kimerejea",
            "Kihisi {sensor} cha {space} kinafanya kazi tena tangu saa {time}.",
        ),
        BACKLOG: (
            "Data ya matumizi haijatumwa",
            "{space} ina data ya matumizi inayosubiri zaidi ya siku moja (saa ya zamani zaidi "
            "{oldest}).",
        ),
        CLOCK: ("Saa haijasawazishwa", "Saa ya kioski cha {space} haijasawazishwa."),
        DISK: ("Diski karibu kujaa", "Diski ya kioski cha {space} imejaa {percent}%."),
        EVACUATION: (
            "Uhamishaji umeanza",
            "Uhamishaji ulianza {space} saa {time}; watu {count} wameingia.",
        ),
        "test": ("Jaribio kutoka {space}", "Ujumbe wa majaribio kutoka kioski cha {space}."),
        "late": "(umechelewa: ilitokea saa {time})",
        "repeats": "(mabadiliko {n} zaidi tangu hapo)",
        "people": "Walioingia: {names}",
    },
    "zh_Hant_TW": {
        OPENED: ("{space} 已開放", "{space} 於 {time} 開放。"),
        CLOSED: ("{space} 已關閉", "{space} 於 {time} 關閉。"),
        DOOR_OPEN: ("門未關", "{space} 的門自 {time} 起一直開著（{minutes} 分鐘）。"),
        SENSOR_FAULT: ("感測器故障", "{space} 的感測器 {sensor} 自 {time} 起故障：{reason}"),
        SENSOR_OK: ("感測器已恢復", "{space} 的感測器 {sensor} 自 {time} 起恢復正常。"),
        BACKLOG: ("使用資料未送出", "{space} 有超過一天未送出的使用資料（最早的時段 {oldest}）。"),
        CLOCK: ("時鐘未同步", "{space} 資訊站的時鐘未同步。"),
        DISK: ("磁碟快滿了", "{space} 資訊站的磁碟已使用 {percent}%。"),
        EVACUATION: ("疏散已開始", "{space} 於 {time} 開始疏散；{count} 人已簽到。"),
        "test": ("來自 {space} 的測試", "來自 {space} 資訊站的測試訊息。"),
        "late": "（延遲：發生於 {time}）",
        "repeats": "（之後又有 {n} 次變化）",
        "people": "已簽到：{names}",
    },
}


def language(code: str | None) -> str:
    """The table's language for a target's or space's code: "es_CO" and "es-CO" read as
    "es", "zh-Hant-TW" as "zh_Hant_TW"; anything unknown as English."""
    code = (code or "").replace("-", "_")
    if code in TEXTS:
        return code
    base = code.split("_")[0]
    if base == "zh":
        return "zh_Hant_TW"
    return base if base in TEXTS else "en"


def clip(value: object, limit: int = MAX_FIELD) -> str:
    """A value as it may appear in a message: one line, bounded."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def local_time(at: float, zone: ZoneInfo) -> str:
    """HH:MM in the space's time zone."""
    when = datetime.fromtimestamp(at, UTC).astimezone(zone)
    return when.strftime("%H:%M")


def message(kind: str, lang: str, facts: dict) -> tuple[str, str]:
    """The (title, body) of an event of `kind` in `lang`, from `facts` (space, time,
    sensor, reason, minutes, oldest, percent, count: whichever the kind uses). Names are
    never among the facts: `people` adds them, for a target that allowed it."""
    table = TEXTS[language(lang)]
    title, body = table[kind]
    values = {k: clip(v) for k, v in facts.items()}
    values.setdefault("space", "")
    return _fill(title, values), _fill(body, values)


def _fill(template: str, values: dict) -> str:
    """str.format that leaves a placeholder it has no value for empty, not raising."""

    class Missing(dict):
        def __missing__(self, key: str) -> str:
            return ""

    return template.format_map(Missing(values))


def late(lang: str, at_time: str) -> str:
    return _fill(TEXTS[language(lang)]["late"], {"time": at_time})


def repeats(lang: str, n: int) -> str:
    return _fill(TEXTS[language(lang)]["repeats"], {"n": n})


def people(lang: str, names: list[str]) -> str:
    """The line that lists who was signed in (personal targets only), bounded."""
    shown = clip(", ".join(names), 1000)
    return _fill(TEXTS[language(lang)]["people"], {"names": shown})


def _shape(url: str) -> str | None:
    """What is wrong with `url` before Apprise reads it, or None."""
    if not isinstance(url, str) or not url.strip():
        return "give an Apprise URL, e.g. json://host/path or tgram://token/chat"
    if len(url) > MAX_URL:
        return f"an Apprise URL is at most {MAX_URL} characters"
    if any(c in url for c in "\r\n\x00"):
        return "an Apprise URL is one line"
    if "://" not in url:
        return "an Apprise URL begins with its service, e.g. json:// or tgram://"
    return None


def check_url(url: str) -> str | None:
    """Why `url` is no Apprise URL this kiosk can send to, or None if it is one. (It
    loads Apprise's plugins: the sync agent's to call, not the kiosk's.)"""
    problem = _shape(url)
    if problem:
        return problem
    import apprise  # here, not at the top: the kiosk imports this module without it

    if apprise.Apprise.instantiate(url.strip(), suppress_exceptions=True) is None:
        return "Apprise does not know this URL; see docs/notifications.md for its forms"
    return None


def send(url: str, title: str, body: str) -> tuple[bool, str]:
    """Send one message to one target now: (ok, the target's answer or the error).

    The answer comes from the AppriseResult that Apprise 2's notify() returns: its log
    entries of this call alone (INFO and above), which name the HTTP status of a refusal
    ("error=500") or the connection's failure. These are per call, so two sends at once
    (the kiosk's test and the agent's outbox) never mix them up, as the process-wide
    LogCapture would. Never raises."""
    problem = check_url(url)
    if problem:
        return False, problem
    import apprise

    try:
        sender = apprise.Apprise()
        if not sender.add(url.strip()):
            return False, "Apprise does not know this URL"
        result = sender.notify(body=body, title=title, timeout=SEND_TIMEOUT, log_level=logging.INFO)
        lines = [
            clip(entry.message, MAX_ANSWER)
            for entry in result.logs()
            if _level(entry) >= logging.INFO and "Notifying" not in entry.message
        ]
        ok = bool(result)
        if ok:
            services = ", ".join(r.name for r in result) or "the target"
            answer = f"accepted by {services}"
        else:
            answer = "; ".join(lines) or f"not delivered ({result.status.name.lower()})"
        return ok, clip(answer, MAX_ANSWER)
    except Exception as exc:  # a plugin's own bug must not break the caller's loop
        return False, clip(f"could not send: {type(exc).__name__}: {exc}", MAX_ANSWER)


def _level(entry) -> int:
    level = getattr(entry, "level", logging.WARNING)
    if isinstance(level, str):
        return logging.getLevelName(level) if level in logging._nameToLevel else logging.WARNING
    return int(level)


def send_test(url: str, language: str, space: str = "spacekiosk") -> tuple[bool, str]:
    """The Notifications page's "send a test": one test message, now, in `language`;
    returns (ok, the target's answer or the error text).

    It is sent from a child process: Apprise loads every plugin it has on first use,
    paho-mqtt among them (its MQTT target), and the kiosk never loads paho (an
    architecture rule, tests/test_layers.py), nor wants Apprise's 700 modules for good."""
    title, body = message("test", language, {"space": space})
    return send_apart(url, title, body)


def send_apart(url: str, title: str, body: str) -> tuple[bool, str]:
    """`send`, in a child process of the same Python (see send_test)."""
    problem = _shape(url)
    if problem:
        return False, problem
    request = json.dumps({"url": url, "title": title, "body": body})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "spacekiosk.notices"],
            input=request,
            capture_output=True,
            text=True,
            timeout=SEND_TIMEOUT + 30,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return bool(answer["ok"]), clip(answer["answer"], MAX_ANSWER)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {SEND_TIMEOUT + 30} s"
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return False, clip(f"could not send: {exc}", MAX_ANSWER)


def _main() -> None:
    """`python -m spacekiosk.notices`: read {url, title, body} on stdin, send it, and
    print {ok, answer} as one line of JSON."""
    # Apprise's answer is its log of the call; let the logger emit it (to the parent).
    logging.getLogger("apprise").setLevel(logging.INFO)
    request = json.loads(sys.stdin.read())
    ok, answer = send(str(request["url"]), str(request["title"]), str(request["body"]))
    print(json.dumps({"ok": ok, "answer": answer}))


if __name__ == "__main__":
    _main()
