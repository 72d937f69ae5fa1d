#!/usr/bin/env bash
# Setup for the Quix Streams peer of `make bench` (see bench/peers/CONTRACT.md).
# Run from the repo root. Creates .local/bench/quix/venv with the versions pinned in
# requirements.txt. Idempotent: the marker holds a digest of requirements.txt, so the
# install is skipped when it was already done for the same pins and redone when they change.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
here=$root/bench/peers/quix
dest=$root/.local/bench/quix
venv=$dest/venv
marker=$dest/.ready

fail() { echo "quix peer setup: $*" >&2; exit 1; }

want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

command -v python3 >/dev/null || fail "python3 not found"
mkdir -p "$dest"
rm -f "$marker"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || fail "python3 -m venv failed"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" \
  >"$dest/pip.log" 2>&1 || fail "pip install failed, see $dest/pip.log"
"$venv/bin/python" -c "import quixstreams" 2>>"$dest/pip.log" \
  || fail "quixstreams does not import, see $dest/pip.log"
echo "$want" >"$marker"
