# Sourced by scripts/test and scripts/up: install the Debian packages listed in
# scripts/debian-packages.txt that this machine lacks. Only as root with apt-get; otherwise
# say which are missing and go on (the tests that need them skip themselves).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
missing=()
while read -r probe pkg; do
  case "$probe" in ''|'#'*) continue ;; esac
  if [ "${probe#/}" != "$probe" ]; then
    [ -e "$probe" ] || missing+=("$pkg")
  elif ! command -v "$probe" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$probe" ] && ! [ -x "/sbin/$probe" ] && ! [ -x "/usr/bin/$probe" ]; then
    missing+=("$pkg")
  fi
done <"$root/scripts/debian-packages.txt"
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${missing[*]} ..." >&2
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      echo "apt-get install failed (log above)" >&2
      rm -f "$log"
      exit 1
    fi
    rm -f "$log"
  else
    echo "note: Debian packages missing (tests that need them will skip): ${missing[*]}" >&2
  fi
fi
