# shellcheck shell=bash
# What scripts/install (a space's Pi) and scripts/install-central (the central server)
# share: Debian packages, the service user, releases under /opt/spacekiosk, the units.
# Sourced, not run. Every step changes something only when it differs from what is
# there already, so running an installer twice changes nothing the second time.

PREFIX=${SPACEKIOSK_PREFIX:-/opt/spacekiosk}
RELEASES=$PREFIX/releases
VENV=$PREFIX/venv # a symlink to the current release: a rollback is a symlink switch
UNIT_DIR=/etc/systemd/system
SERVICE_USER=spacekiosk
KEEP_RELEASES=3

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit "${2:-1}"
}
usage_error() {
  printf '%s: %s\n' "$PROG" "$1" >&2
  printf 'Run %s --help for the options.\n' "$0" >&2
  exit 64
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0 ...)" 77
}

# systemd is PID 1 and running (not a chroot, not a container without it): the test
# sd_booted(3) makes.
systemd_running() { [ -d /run/systemd/system ]; }

# --- files: write only what differs -------------------------------------------------

# put PATH MODE OWNER:GROUP < content — replace PATH only if its content, mode or
# owner differ, so a second run leaves its mtime alone. Prints PATH when it changed.
put() {
  local path=$1 mode=$2 owner=$3 new tmp
  # Compared outside the target's folder, so an unchanged file leaves even the folder's
  # mtime alone.
  new=$(mktemp /tmp/spacekiosk-put.XXXXXX)
  cat >"$new"
  if [ -f "$path" ] && cmp -s "$new" "$path"; then
    rm -f "$new"
    fix_mode "$path" "$mode" "$owner"
    return 0
  fi
  tmp=$(mktemp "$(dirname "$path")/.spacekiosk.XXXXXX")
  cat "$new" >"$tmp"
  rm -f "$new"
  chmod "$mode" "$tmp"
  chown "$owner" "$tmp"
  mv -f "$tmp" "$path"
  CHANGED+=("$path")
}

# fix_mode PATH MODE OWNER:GROUP — chmod/chown only when they differ.
fix_mode() {
  local path=$1 mode=$2 owner=$3
  if [ "$(stat -c '%a' "$path")" != "$(printf '%o' "$((8#$mode))")" ]; then
    chmod "$mode" "$path"
    CHANGED+=("$path (mode)")
  fi
  if [ "$(stat -c '%U:%G' "$path")" != "$owner" ]; then
    chown "$owner" "$path"
    CHANGED+=("$path (owner)")
  fi
}

# folder PATH MODE OWNER:GROUP
folder() {
  if [ ! -d "$1" ]; then
    install -d -m "$2" -o "${3%%:*}" -g "${3##*:}" "$1"
    CHANGED+=("$1/")
  else
    fix_mode "$1" "$2" "$3"
  fi
}

# link TARGET PATH — a symlink, replaced atomically only when it points elsewhere.
link() {
  local target=$1 path=$2
  if [ "$(readlink "$path" 2>/dev/null)" = "$target" ]; then return 0; fi
  ln -sfn "$target" "$path.new"
  mv -fT "$path.new" "$path"
  CHANGED+=("$path -> $target")
}

# --- Debian packages -----------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

APT_UPDATED=""
apt_update_once() {
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
}

# available PKG — the archive has it (after an update).
available() { [ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; }

# apt_install PKG... — install the ones not installed; a name "a|b" means the first of
# them the archive has (chromium on Debian and newer Raspberry Pi OS, chromium-browser
# on older); a name ending in "?" is installed only where the archive has it.
apt_install() {
  local want=() later=() name alt choice
  for name in "$@"; do
    choice=""
    for alt in ${name//[|?]/ }; do
      if installed "$alt"; then choice=installed; break; fi
    done
    [ "$choice" = installed ] || later+=("$name")
  done
  # An optional package alone never costs an update: on a system whose archive lacks it
  # (python3-lgpio off the Pi) a second run would otherwise update every time.
  for name in "${later[@]}"; do
    [[ $name == *\? ]] || apt_update_once
  done
  for name in "${later[@]}"; do
    choice=""
    for alt in ${name//[|?]/ }; do
      if available "$alt"; then choice=$alt; break; fi
    done
    if [ -n "$choice" ]; then
      want+=("$choice")
    elif [[ $name != *\? ]]; then
      die "no Debian package ${name//|/ or } in this system's archives (apt-get update, sources.list?)"
    fi
  done
  if [ ${#want[@]} -gt 0 ]; then
    say "installing Debian packages: ${want[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" \
      >/dev/null
    CHANGED+=("packages: ${want[*]}")
  fi
}

# --- the service user ----------------------------------------------------------------

ensure_group() {
  if ! getent group "$1" >/dev/null; then
    groupadd --system "$1"
    CHANGED+=("group $1")
  fi
}

# ensure_user [SUPPLEMENTARY_GROUP...]
ensure_user() {
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/spacekiosk --no-create-home \
      --shell /usr/sbin/nologin --comment "spacekiosk services" "$SERVICE_USER"
    CHANGED+=("user $SERVICE_USER")
  fi
  local group
  for group in "$@"; do
    ensure_group "$group"
    if ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
      usermod -a -G "$group" "$SERVICE_USER"
      CHANGED+=("user $SERVICE_USER in group $group")
    fi
  done
}

# as_service_user CMD... — run a command as the service user, without a login session.
as_service_user() {
  (cd / && umask 077 && setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
    --reset-env -- "$@")
}

# --- releases ------------------------------------------------------------------------

PACKAGES_IN_TREE=(pyproject.toml README.md spacekiosk kiosk sensors sync collector)

# resolve_release SOURCE EXTRAS — sets RELEASE_ID and RELEASE_PIP (what pip installs).
# SOURCE is a source tree (a clone, an unpacked `git archive`), a wheel or sdist file,
# or a version number to fetch from the package index pip is configured with. A tree's
# id is its version and a hash of the files that make the package, so the same files
# installed twice are the same release, and an edited tree is a new one.
resolve_release() {
  local source=$1 extras=$2
  STAGE=$(mktemp -d /tmp/spacekiosk-release.XXXXXX)
  trap 'rm -rf "$STAGE"' EXIT
  if [ -d "$source" ]; then
    [ -f "$source/pyproject.toml" ] || die "$source has no pyproject.toml: not a spacekiosk tree"
    tar -C "$source" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
      -cf - "${PACKAGES_IN_TREE[@]}" | tar -C "$STAGE" -xf -
    RELEASE_ID=$(python3 - "$STAGE" <<'PY'
import hashlib, sys, tomllib
from pathlib import Path

root = Path(sys.argv[1])
digest = hashlib.sha256()
for path in sorted(p for p in root.rglob("*") if p.is_file()):
    digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
print(f"{version}-{digest.hexdigest()[:12]}")
PY
    )
    RELEASE_PIP="$STAGE$extras"
  elif [ -f "$source" ]; then
    local base version
    base=$(basename "$source")
    case $base in
      spacekiosk-*.whl | spacekiosk-*.tar.gz) ;;
      *) die "$source is neither a spacekiosk wheel nor an sdist (spacekiosk-VERSION...)" ;;
    esac
    version=${base#spacekiosk-}
    version=${version%%[-.]tar.gz}
    version=${version%%-*}
    version=${version%.tar.gz}
    cp "$source" "$STAGE/"
    RELEASE_ID="$version-$(sha256sum "$source" | cut -c1-12)"
    RELEASE_PIP="$STAGE/$base$extras"
  elif [[ $source =~ ^[0-9][0-9A-Za-z.+-]*$ ]]; then
    RELEASE_ID=$source
    RELEASE_PIP="spacekiosk$extras==$source"
  else
    die "--release $source: no such folder or file, and not a version number"
  fi
}

# build_release SYSTEM_SITE(yes|no) — a virtual environment of its own for the release,
# built beside the others and only then made current. A folder marked complete is kept.
build_release() {
  local system_site=$1 dir=$RELEASES/$RELEASE_ID
  if [ -f "$dir/.complete" ]; then return 0; fi
  folder "$PREFIX" 0755 root:root
  folder "$RELEASES" 0755 root:root
  rm -rf "$dir"
  say "building release $RELEASE_ID in $dir"
  local flags=()
  # Debian's python3-lgpio drives the Pi's pins; pip's would need building.
  [ "$system_site" = yes ] && flags+=(--system-site-packages)
  python3 -m venv "${flags[@]}" "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location \
    "$RELEASE_PIP" || {
    rm -rf "$dir"
    die "could not build release $RELEASE_ID (pip install failed; see above)"
  }
  "$dir/bin/spacekiosk" --version >/dev/null || die "release $RELEASE_ID does not run"
  printf '%s\n' "$RELEASE_ID" >"$dir/.complete"
  CHANGED+=("$dir")
}

current_release() { basename "$(readlink "$VENV" 2>/dev/null || echo none)"; }

switch_release() {
  link "releases/$1" "$VENV"
  link "$VENV/bin/spacekiosk" /usr/local/bin/spacekiosk
}

# Keep the current release, the one before it, and the newest others up to KEEP_RELEASES.
prune_releases() {
  local keep=("$(current_release)" "${PREVIOUS_RELEASE:-}") dir name
  # shellcheck disable=SC2012 # release names are ours: no odd characters
  for name in $(ls -1t "$RELEASES" 2>/dev/null | tail -n +$((KEEP_RELEASES + 1))); do
    [[ " ${keep[*]} " == *" $name "* ]] && continue
    dir=$RELEASES/$name
    rm -rf "$dir"
    CHANGED+=("removed old release $name")
  done
}

# --- units ---------------------------------------------------------------------------

# install_units GLOB... — copy the units of systemd/ that match, reload systemd if it
# runs, enable every one with an [Install] section (a target enables its Also=). Sets
# UNITS_INSTALLED.
install_units() {
  local path name before=${#CHANGED[@]}
  UNITS_INSTALLED=()
  for path in "$@"; do
    [ -f "$path" ] || continue
    name=$(basename "$path")
    put "$UNIT_DIR/$name" 0644 root:root <"$path"
    UNITS_INSTALLED+=("$name")
  done
  if [ ${#CHANGED[@]} -ne "$before" ] && systemd_running; then systemctl daemon-reload; fi
  for name in "${UNITS_INSTALLED[@]}"; do
    grep -q '^\[Install\]' "$UNIT_DIR/$name" || continue
    if [ "$(systemctl is-enabled "$name" 2>/dev/null)" != enabled ]; then
      systemctl enable --quiet "$name" 2>&1 | grep -v '^Running in chroot' || true
      CHANGED+=("enabled $name")
    fi
  done
}

# wait_active SECONDS UNIT... — every unit reaches and stays "active" (Type=notify: READY=1
# sent) until the deadline; a unit restarting in a loop never does. Prints the laggards.
# With WAIT_FAST_FAIL=1 it gives up as soon as a unit has failed or waits to restart.
wait_active() {
  local seconds=$1 unit state bad failing
  shift
  local deadline=$((SECONDS + seconds)) steady=0
  while :; do
    bad=() failing=""
    for unit in "$@"; do
      state=$(systemctl show -p ActiveState,SubState --value "$unit" | paste -sd/)
      [ "$state" = active/running ] || [ "$state" = active/waiting ] || bad+=("$unit=$state")
      case $state in failed/* | */auto-restart) failing=1 ;; esac
    done
    if [ ${#bad[@]} -eq 0 ]; then
      # Active twice, 5 s apart: a crash right after READY=1 counts as unhealthy.
      steady=$((steady + 1))
      [ "$steady" -ge 2 ] && return 0
    else
      steady=0
    fi
    if [ "$SECONDS" -ge "$deadline" ] || { [ -n "$failing" ] && [ -n "${WAIT_FAST_FAIL:-}" ]; }; then
      printf '%s\n' "${bad[@]}"
      return 1
    fi
    sleep 5
  done
}

report_changes() {
  if [ ${#CHANGED[@]} -eq 0 ]; then
    say "nothing to change: everything was installed already"
  else
    say "changed:"
    printf '  %s\n' "${CHANGED[@]}"
  fi
}
