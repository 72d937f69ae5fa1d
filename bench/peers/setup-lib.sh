# Shared steps of the peers' setup.sh (bench/peers/CONTRACT.md). Source it, then:
#   peer_init NAME FILE...   names the peer; FILE... are its pins (digested into the marker)
#   peer_is_ready CHECK...   exit 0 now when the marker matches the pins and every CHECK holds
#   peer_venv MODULE         the peer's venv with requirements.txt installed; MODULE must import
#   peer_mvn DIR GLOB PROP   mvn package of the peer's pom.xml with -DPROP=DIR; GLOB must match
#   peer_done                write the marker
# Idempotent: the marker holds a digest of the pins, so editing them redoes the work.
set -euo pipefail
peer_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

peer_init() {
  peer_name=$1; shift
  peer_here=$peer_root/bench/peers/$peer_name
  peer_dest=$peer_root/.local/bench/$peer_name
  peer_python=$peer_dest/venv/bin/python
  peer_marker=$peer_dest/.ready
  peer_want=$(cd "$peer_here" && cat "$@" | sha256sum | cut -d' ' -f1)
}

fail() { echo "$peer_name peer setup: $*" >&2; exit 1; }

peer_is_ready() {
  [ -f "$peer_marker" ] && [ "$(cat "$peer_marker")" = "$peer_want" ] || return 0
  local check
  for check in "$@"; do eval "$check" || return 0; done
  exit 0
}

peer_venv() {
  command -v python3 >/dev/null || fail "python3 not found"
  mkdir -p "$peer_dest"
  rm -f "$peer_marker"
  if [ ! -x "$peer_python" ]; then
    python3 -m venv "$peer_dest/venv" || fail "python3 -m venv failed"
  fi
  "$peer_python" -m pip install -q --disable-pip-version-check -r "$peer_here/requirements.txt" \
    >"$peer_dest/pip.log" 2>&1 || fail "pip install failed, see $peer_dest/pip.log"
  "$peer_python" -c "import $1" 2>>"$peer_dest/pip.log" \
    || fail "$1 does not import, see $peer_dest/pip.log"
}

peer_mvn() {
  local dir=$1 glob=$2 prop=$3
  command -v mvn >/dev/null || fail "mvn not found (needed to resolve the peer's jars)"
  rm -rf "$dir"
  mvn -q -B -Dstyle.color=never -f "$peer_here/pom.xml" package -D"$prop=$dir" \
    >"$peer_dest/mvn.log" 2>&1 || fail "mvn could not resolve the jars, see $peer_dest/mvn.log"
  compgen -G "$dir/$glob" >/dev/null || fail "no $glob in $dir"
}

peer_done() { echo "$peer_want" >"$peer_marker"; }
