# Sourced by scripts/up and scripts/test: create .venv and install Flotilla into it.
# Idempotent: a second run only installs what changed. Needs python3 (>= 3.11) with venv.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "flotilla needs Python >= 3.11 (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$root/.venv/bin/python" ]; then
  if ! "$py" -m venv "$root/.venv"; then
    echo "python venv module missing: installing python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$py" -m venv "$root/.venv"
  fi
fi
venv="$root/.venv"
stamp="$venv/.installed-$1"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  echo "installing flotilla[$1] into $venv ..." >&2
  log="$venv/pip-install.log"
  if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
         "$venv/bin/python" -m pip install -q -e "$root[$1]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "pip install failed; the whole log is $log" >&2
    exit 1
  fi
  touch "$stamp"
fi
