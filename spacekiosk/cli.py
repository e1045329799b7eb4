"""The `spacekiosk` command: one entry point for every service and tool."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from spacekiosk import __version__, config
from spacekiosk.db import StoreError
from spacekiosk.service import EX_CONFIG, EX_DATAERR, setup_logging, stop_event

log = logging.getLogger("spacekiosk")
CENTRAL_PATH = "/etc/spacekiosk/central.toml"  # where spacekiosk-collector.service looks


def _central_path(explicit: str | None) -> str:
    """The collector's config: the one every central command finds by default."""
    return explicit or os.environ.get("SPACEKIOSK_CONFIG") or CENTRAL_PATH


def _load(args, want: type, secrets: bool = True) -> config.SpaceConfig | config.CollectorConfig:
    """Load and check the config, or print every problem and exit 78."""
    try:
        loaded = config.load(args.config, secrets=secrets)
    except config.ConfigError as exc:
        if want is config.CollectorConfig and not config.find_path(args.config).exists():
            # The core's advice (init-config --pilot) writes a space's config, not this.
            print(
                f"{exc.source}: file not found; write one with "
                f"`spacekiosk init-config --central {exc.source}`, or pass "
                "--config PATH or set SPACEKIOSK_CONFIG",
                file=sys.stderr,
            )
        else:
            print(exc.report(), file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    if not isinstance(loaded, want):
        kind = "[space]" if want is config.SpaceConfig else "[central]"
        print(f"{loaded.source}: this command needs a config with a {kind} table", file=sys.stderr)
        raise SystemExit(EX_CONFIG)
    return loaded


def cmd_kiosk(args) -> int:
    from kiosk import closing, create_app
    from spacekiosk.service import notify
    from spacekiosk.web import serve

    cfg = _load(args, config.SpaceConfig, secrets=False)
    app = create_app(cfg)
    stopping = stop_event()
    closer = closing.run(cfg, stopping, app.extensions["clock"])
    code = serve(
        app,
        cfg.kiosk.listen,
        "kiosk",
        stopping,
        threads=cfg.kiosk.threads,
        on_ready=lambda: notify("READY=1"),
    )
    stopping.set()
    closer.join(timeout=10)
    return code


def cmd_sensors(args) -> int:
    from sensors import daemon

    cfg = _load(args, config.SpaceConfig, secrets=False)
    return daemon.run(cfg, stop_event(), simulate=args.simulate, seed=args.seed, speed=args.speed)


def cmd_sync(args) -> int:
    from sync import agent

    cfg = _load(args, config.SpaceConfig)
    if args.once:
        return agent.run_once(cfg, args.timeout, out=lambda line: print(line, flush=True))
    return agent.run(cfg, stop_event())


def cmd_collector(args) -> int:
    import collector

    # The central server's config, like `space`, `user` and `token`, not a space's.
    args.config = _central_path(args.config)
    cfg = _load(args, config.CollectorConfig)
    return collector.run(cfg, stop_event())


def cmd_demo(args) -> int:
    from spacekiosk import demo

    # What the units' UMask=0077 does for the services: the demo's stores, logs and
    # secrets, and those of every process it starts, are its user's alone.
    os.umask(0o077)
    return demo.run(
        Path(args.data) if args.data else None,
        kiosk_port=args.kiosk_port,
        collector_port=args.collector_port,
        sync_interval=args.sync_interval,
    )


def cmd_watch(args) -> int:
    from spacekiosk import watch

    try:
        password = watch.read_password(args.password_file)
        config.broker_address(args.broker)
    except ValueError as exc:
        print(f"spacekiosk watch: {exc}", file=sys.stderr)
        return 2
    return watch.run(
        args.broker,
        args.username,
        password,
        args.topic,
        stop_event(),
        count=args.count,
        out=lambda line: print(line, flush=True),
        err=lambda line: print(line, file=sys.stderr, flush=True),
    )


def cmd_check_config(args) -> int:
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    if isinstance(cfg, config.SpaceConfig):
        sensors = [name for name, _ in cfg.sensors.pins()] or ["none"]
        print(
            f"{cfg.source}: OK — space {cfg.space.id!r} ({cfg.space.name}), "
            f"{cfg.space.timezone.key}, languages {', '.join(cfg.space.languages)}, "
            f"sensors: {', '.join(sensors)}"
        )
        # The settings the local admins changed on the kiosk's pages win over the file's.
        from spacekiosk import settings

        for line in settings.report(cfg.database.path, cfg):
            print(line)
    else:
        print(
            f"{cfg.source}: OK — central collector on "
            f"{cfg.central.listen[0]}:{cfg.central.listen[1]}"
        )
    # A file init-config wrote and nobody finished is valid (the kiosk and the sensors
    # run without the broker, and the pilots' examples must check), so these are warnings
    # and the exit status stays 0; but they say plainly that nothing will reach the centre.
    for warning in _placeholders(cfg):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


PLACEHOLDER_HOSTS = ("example.org", "example.com", "example.net")


def _placeholders(cfg: config.SpaceConfig | config.CollectorConfig) -> list[str]:
    """What an untouched config still holds in place of the real thing."""
    found = []
    host = cfg.mqtt.host.rstrip(".").lower()
    if any(host == name or host.endswith("." + name) for name in PLACEHOLDER_HOSTS):
        found.append(
            f"mqtt.host is the placeholder {cfg.mqtt.host!r}: nothing will reach the "
            "central broker until it names yours"
        )
    if cfg.mqtt.password_file is None:
        found.append(
            "mqtt.password_file is not set: the broker refuses a login without a password; "
            "save the one `spacekiosk space add` printed and point password_file at it"
            if isinstance(cfg, config.SpaceConfig)
            else "mqtt.password_file is not set: the broker refuses a login without a "
            "password; save the collector's and point password_file at it"
        )
    return found


def _admin(args, action) -> int:
    """Run one of the central team's commands against the collector's config and store."""
    from collector import admin

    # On the central server the collector's config is the one to find.
    args.config = _central_path(args.config)
    cfg = _load(args, config.CollectorConfig, secrets=False)
    try:
        return action(admin, cfg)
    except admin.Refused as exc:
        print(f"spacekiosk {args.command} {args.action}: {exc}", file=sys.stderr)
        return exc.code


def cmd_space(args) -> int:
    pid_file = args.pid_file if getattr(args, "reload", False) else None
    actions = {
        "add": lambda admin, cfg: admin.space_add(cfg, args.id, args.name, args.capacity, pid_file),
        "rotate": lambda admin, cfg: admin.space_rotate(cfg, args.id, pid_file),
        "remove": lambda admin, cfg: admin.space_remove(cfg, args.id, pid_file),
        "list": lambda admin, cfg: admin.space_list(cfg),
    }
    return _admin(args, actions[args.action])


def cmd_user(args) -> int:
    actions = {
        "add": lambda admin, cfg: admin.user_add(cfg, args.name, args.password_stdin, args.replace),
        "remove": lambda admin, cfg: admin.user_remove(cfg, args.name),
    }
    return _admin(args, actions[args.action])


def cmd_token(args) -> int:
    actions = {
        "add": lambda admin, cfg: admin.token_add(cfg, args.name, args.replace),
        "remove": lambda admin, cfg: admin.token_remove(cfg, args.name),
    }
    return _admin(args, actions[args.action])


def cmd_admin(args) -> int:
    """The space's local admins, in the Pi's store: add, remove, list."""
    from kiosk import admins
    from kiosk.admin import audit
    from spacekiosk import passwords
    from spacekiosk.db import open_store
    from spacekiosk.migrations import SPACE_MIGRATIONS

    cfg = _load(args, config.SpaceConfig, secrets=False)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    try:
        if args.action == "list":
            names = admins.names(db)
            print("\n".join(names) if names else "no admins yet: spacekiosk admin add NAME")
            return 0
        passwords.check_name(args.name, "admin")
        if args.action == "remove":
            if not admins.remove(db, args.name):
                raise ValueError(f"there is no admin {args.name}")
            audit(db, "admin removed", args.name)
            print(f"admin {args.name} removed, and logged out everywhere")
            return 0
        if admins.exists(db, args.name) and not args.replace:
            raise ValueError(f"admin {args.name} exists; pass --replace for a new password and PIN")
        password = _secret(
            args.password_file, "password", "--password-file", passwords.check_password
        )
        pin = _secret(args.pin_file, "PIN", "--pin-file", admins.check_pin)
        new = admins.add(db, args.name, password, pin)
        audit(db, "admin added" if new else "admin given a new password", args.name)
        done = "added" if new else "has a new password and PIN, and is logged out everywhere"
        print(f"admin {args.name} {done}")
        return 0
    except ValueError as exc:
        print(f"spacekiosk admin {args.action}: {exc}", file=sys.stderr)
        return EX_DATAERR
    finally:
        db.close()


def _secret(path: str | None, what: str, option: str, check) -> str:
    """A secret from the first line of a file, or typed twice at the terminal."""
    import getpass

    if path:
        try:
            return check(Path(path).read_text(encoding="utf-8").splitlines()[0])
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read a {what} from {path}: {exc}") from None
    if not sys.stdin.isatty():
        raise ValueError(f"no terminal to ask for the {what}: pass {option} PATH")
    first = check(getpass.getpass(f"{what}: "))
    if getpass.getpass("again: ") != first:
        raise ValueError(f"the two {what}s differ; nothing changed")
    return first


def _store_of(args) -> tuple[Path, object, str]:
    """The SQLite store a config names, the Kind of store it is, and its backup folder
    (--to wins); exit 69 with the way to do it for a PostgreSQL central store."""
    from spacekiosk import backup
    from spacekiosk.migrations import SPACE_MIGRATIONS

    cfg = _load(args, config.SpaceConfig | config.CollectorConfig, secrets=False)
    if isinstance(cfg, config.SpaceConfig):
        kind = backup.Kind(cfg.space.id, SPACE_MIGRATIONS, backup.SPACE_TABLES)
        return cfg.database.path, kind, cfg.backup
    from collector.store import COLLECTOR_MIGRATIONS

    if cfg.central.database_url:
        raise backup.BackupError(
            "the central store is in PostgreSQL (central.database_url): back it up with "
            "`pg_dump --format=custom --file=central-$(date -u +%Y%m%dT%H%M%SZ).dump DBNAME` "
            "and restore with `pg_restore --clean --dbname=DBNAME FILE`, the collector "
            "stopped (docs/backups.md)",
            backup.EX_UNAVAILABLE,
        )
    kind = backup.Kind("central", COLLECTOR_MIGRATIONS, backup.CENTRAL_TABLES)
    return cfg.central.database, kind, cfg.backup


def cmd_backup(args) -> int:
    from spacekiosk import backup

    try:
        store, kind, settings = _store_of(args)
        folder = Path(args.to) if args.to else settings.folder
        keep = args.keep if args.keep is not None else settings.keep
        if keep < 1:
            raise backup.BackupError("--keep must be at least 1", 2)
        made = backup.backup(store, folder.absolute(), kind, keep)
    except backup.BackupError as exc:
        print(f"spacekiosk backup: {exc}", file=sys.stderr)
        return exc.code
    print(f"backed up {store} to {made.path} ({made.bytes:,} bytes)")
    for old in made.removed:
        print(f"removed the old backup {old.name} (keeping {keep})")
    if made.same_disk:
        print(
            f"warning: {folder} is on the same disk as {store}: it will not survive the "
            "disk failing; point [backup] folder at a USB stick (docs/backups.md)",
            file=sys.stderr,
        )
    return 0


def cmd_restore(args) -> int:
    from spacekiosk import backup

    try:
        store, kind, _settings = _store_of(args)
        central = kind.tables == backup.CENTRAL_TABLES
        units = ("spacekiosk-collector.service",) if central else backup.PI_UNITS
        done = backup.restore(Path(args.file).absolute(), store, kind, units=units)
    except backup.BackupError as exc:
        print(f"spacekiosk restore: {exc}", file=sys.stderr)
        return exc.code
    held = "" if done.checked.visits is None else f", {done.checked.visits} visits"
    print(f"restored {args.file} to {store} (schema version {done.checked.version}{held})")
    if done.aside:
        print(f"the store it replaced is kept as {done.aside}")
    print("start the services again: sudo systemctl start spacekiosk.target")
    return 0


def cmd_init_config(args) -> int:
    from spacekiosk import pilots

    if args.central:
        text = pilots.central_template(database=args.database or pilots.CENTRAL_DATABASE)
    else:
        pilot = pilots.PILOTS.get(args.pilot)
        if pilot is None:
            print(
                f"unknown pilot {args.pilot!r}; choose from {', '.join(pilots.PILOTS)}",
                file=sys.stderr,
            )
            return 2
        text = pilots.render(pilot, database=args.database or pilots.DATABASE)
    if args.path == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"{path} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    # It holds no secret (those are files of their own), but no one else may change it.
    config.write_file(path, text, 0o644)
    print(f"wrote {path}; check it with `spacekiosk check-config {path}`")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="spacekiosk",
        description="Sign-in kiosk, sensors and anonymous usage sync for a community space.",
    )
    top.add_argument("--version", action="version", version=f"spacekiosk {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            metavar="PATH",
            help=f"config file (default: $SPACEKIOSK_CONFIG, else {config.DEFAULT_PATH})",
        )

    with_config(command("kiosk", cmd_kiosk, "serve the touchscreen kiosk and the status API"))
    p = command("sensors", cmd_sensors, "read the door, motion and people-counter sensors")
    with_config(p)
    p.add_argument(
        "--simulate",
        action="store_true",
        help="use gpiozero's mock pins and synthetic foot traffic (no GPIO needed)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for --simulate's traffic")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --simulate, how many times faster than real time",
    )
    p = command("sync", cmd_sync, "ship anonymous hourly counts to the central collector")
    with_config(p)
    p.add_argument(
        "--once",
        action="store_true",
        help="deliver the backlog once, showing progress, then exit "
        "(0 all delivered, 75 some left queued)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120,
        metavar="SECONDS",
        help="with --once, give up after this long (default 120)",
    )
    command(
        "collector", cmd_collector, "run the central collector: MQTT ingest, web page and API"
    ).add_argument(
        "--config",
        metavar="PATH",
        help=f"the collector's config (default: $SPACEKIOSK_CONFIG, else {CENTRAL_PATH})",
    )
    p = command(
        "demo",
        cmd_demo,
        "run a whole space on this machine: broker, kiosk, simulated sensors, "
        "sync agent and collector",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="keep the demo's files here (default: a temporary folder removed on exit)",
    )
    p.add_argument("--kiosk-port", type=int, default=0, help="default: a free port")
    p.add_argument("--collector-port", type=int, default=0, help="default: a free port")
    p.add_argument("--sync-interval", type=int, default=10, help="seconds between syncs")
    p = command(
        "watch",
        cmd_watch,
        "print the broker's traffic decoded: a line for each bucket of a usage batch, "
        "each status, ack and digest, and why a payload is not readable",
    )
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT")
    p.add_argument("--username", required=True, help="a login that reads the traffic")
    p.add_argument(
        "--password-file", required=True, metavar="PATH", help="its password, on the first line"
    )
    p.add_argument("--topic", default="spacekiosk/#", help="what to watch (default: %(default)s)")
    p.add_argument(
        "--count", type=int, metavar="N", help="exit after N messages (default: until Ctrl-C)"
    )
    p = command(
        "check-config",
        cmd_check_config,
        "check a config file and print every problem (exit 78 if any)",
    )
    p.add_argument(
        "config",
        nargs="?",
        metavar="PATH",
        help=f"default: $SPACEKIOSK_CONFIG, else {config.DEFAULT_PATH}",
    )
    p = command(
        "init-config",
        cmd_init_config,
        "write a complete, commented config: a pilot space's (--pilot ID) or the central "
        f"collector's (--central; the central commands read {CENTRAL_PATH})",
    )
    p.add_argument("path", metavar="PATH", help="where to write it ('-' for stdout)")
    from spacekiosk import pilots

    *others, last = pilots.PILOTS
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pilot", metavar="ID", help=f"a space's: {', '.join(others)} or {last}")
    which.add_argument(
        "--central", action="store_true", help="the central collector's, with placeholders"
    )
    p.add_argument(
        "--database",
        help=f"the SQLite file the config points at (default: {pilots.DATABASE}, "
        f"with --central {pilots.CENTRAL_DATABASE})",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    admin_commands(command, with_config)
    backup_commands(command, with_config)
    central_commands(command)
    return top


def backup_commands(command, with_config) -> None:
    """`backup` and `restore`: the store's backups, on the Pi or the central server."""
    p = command(
        "backup",
        cmd_backup,
        "copy the store (the space's, or with the collector's config the central SQLite "
        "store) into the backup folder while the services run, and keep the newest N",
    )
    with_config(p)
    p.add_argument("--to", metavar="DIR", help="the folder (default: the config's [backup] folder)")
    p.add_argument(
        "--keep", type=int, metavar="N", help="backups to keep (default: [backup] keep, 14)"
    )
    p = command(
        "restore",
        cmd_restore,
        "check a backup and put it in place of the store, keeping the current one aside "
        "(the services must be stopped)",
    )
    p.add_argument("file", metavar="FILE", help="a backup made by `spacekiosk backup`")
    with_config(p)


def admin_commands(command, with_config) -> None:
    """`admin`: the space's local admins, on the Pi, with the space's config."""
    p = command("admin", cmd_admin, "add, remove or list the space's local admins (on the Pi)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = sub.add_parser(
        "add",
        help="add a local admin: asks for a password and a PIN for the kiosk's screen",
        description="add a local admin: asks twice for a password (10 characters or more) "
        "and for a PIN of 4-8 digits, for the kiosk's own screen",
    )
    a.add_argument("name", metavar="NAME")
    a.add_argument("--password-file", metavar="PATH", help="read the password from its first line")
    a.add_argument("--pin-file", metavar="PATH", help="read the PIN from its first line")
    a.add_argument("--replace", action="store_true", help="new password and PIN for an admin")
    with_config(a)
    text = "remove a local admin and end their sessions"
    a = sub.add_parser("remove", help=text, description=text)
    a.add_argument("name", metavar="NAME")
    with_config(a)
    text = "list the local admins, one name a line"
    with_config(sub.add_parser("list", help=text, description=text))


def central_commands(command) -> None:
    """`space`, `user` and `token`: what the central team runs beside the collector."""

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            metavar="PATH",
            help=f"the collector's config (default: $SPACEKIOSK_CONFIG, else {CENTRAL_PATH})",
        )

    def actions(p: argparse.ArgumentParser):
        sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, help: str) -> argparse.ArgumentParser:
            a = sub.add_parser(name, help=help, description=help)
            with_config(a)
            return a

        return action

    def reload_options(a: argparse.ArgumentParser) -> None:
        a.add_argument(
            "--reload",
            action="store_true",
            help="send the broker SIGHUP so it rereads its password file at once "
            "(else: systemctl reload mosquitto)",
        )
        a.add_argument(
            "--pid-file",
            default="/run/mosquitto/mosquitto.pid",
            metavar="PATH",
            help="with --reload, the broker's pid file (default: %(default)s)",
        )

    space = actions(
        command(
            "space",
            cmd_space,
            "add, rotate, remove or list the spaces' broker logins and HTTPS tokens "
            "(on the central server, with the collector's config)",
        )
    )
    a = space(
        "add",
        "create a space's broker login and HTTPS token, and print the config snippet "
        "and the secrets for the space",
    )
    a.add_argument("id", metavar="ID", help="the space id, e.g. nairobi")
    a.add_argument("--name", help="the space's name, for the page and reports")
    a.add_argument("--capacity", type=int, help="how many people the space holds")
    reload_options(a)
    a = space("rotate", "give a space a new password and token; the old ones stop working")
    a.add_argument("id", metavar="ID")
    reload_options(a)
    a = space("remove", "delete a space's login and token; the usage it sent is kept")
    a.add_argument("id", metavar="ID")
    reload_options(a)
    space("list", "list the spaces: name, capacity, login, token, last seen")

    user = actions(command("user", cmd_user, "add or remove a login for the central page"))
    a = user("add", "add a login for the central page (asks for the password)")
    a.add_argument("name", metavar="NAME")
    a.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    a.add_argument("--replace", action="store_true", help="set a new password for an existing user")
    user("remove", "remove a login for the central page").add_argument("name", metavar="NAME")

    token = actions(command("token", cmd_token, "add or revoke a bearer token for the JSON API"))
    a = token("add", "make a named API token and print it, once")
    a.add_argument("name", metavar="NAME", help="who uses it, e.g. grafana")
    a.add_argument("--replace", action="store_true", help="replace the token of that name")
    token("remove", "revoke a named API token").add_argument("name", metavar="NAME")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.command, args.verbose)
    try:
        return args.func(args)
    except StoreError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
