# Sourced by bin/run and bin/test: make .venv once and install docbroker into it.
# Versions are pinned by constraints.txt (known to work together); setup.cfg
# holds the lower bounds for other installs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DOCBROKER_VENV:-$ROOT/.venv}"

ensure_venv() {
  local extras="$1" python stamp
  python="$(command -v python3.11 || command -v python3)"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "docbroker needs Python 3.11 or newer; found $("$python" --version)" >&2
    exit 2
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setting up $VENV ..." >&2
    "$python" -m venv "$VENV"
  fi
  # Reinstall only when the dependency files changed since the last install.
  stamp="$VENV/.docbroker-$extras-$(cat "$ROOT/setup.cfg" "$ROOT/constraints.txt" | cksum | cut -d' ' -f1)"
  if [ ! -e "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      -c "$ROOT/constraints.txt" -e "$ROOT[$extras]"
    rm -f "$VENV"/.docbroker-"$extras"-*
    touch "$stamp"
  fi
}
