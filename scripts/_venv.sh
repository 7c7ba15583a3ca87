# Sourced by scripts/up and scripts/test: create .venv and install exactly what uv.lock
# pins (Flotilla itself editable, with the extra named by $1: dev or fast).
# Idempotent: a second run only installs what changed. Needs only python3 (>= 3.11).
# Refresh the lock after changing dependencies in pyproject.toml: `.venv/bin/uv lock`
# (or `--upgrade-package NAME` to move one pin), then commit uv.lock.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "flotilla needs Python >= 3.11 (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  if ! "$py" -m venv "$venv" 2>/dev/null; then
    echo "python venv module missing: installing python3-venv" >&2
    rm -rf "$venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$py" -m venv "$venv"
  fi
fi
stamp="$venv/.installed-$1"
if [ ! -f "$stamp" ] || [ "$root/uv.lock" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  echo "installing flotilla[$1] from uv.lock into $venv ..." >&2
  log="$venv/install.log"
  extras=(--extra "$1")
  [ "$1" = dev ] && extras+=(--extra fast)
  if ! { { [ -x "$venv/bin/uv" ] ||
           "$venv/bin/python" -m pip install -q --require-hashes --no-deps \
             -r "$root/scripts/uv-requirements.txt"; } &&
         UV_PROJECT_ENVIRONMENT="$venv" "$venv/bin/uv" sync --frozen --inexact \
           --project "$root" --python "$venv/bin/python" "${extras[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "install failed; the whole log is $log" >&2
    exit 1
  fi
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
