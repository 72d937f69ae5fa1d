#!/usr/bin/env bash
# Setup for the Flink SQL peer of `make bench` (see bench/peers/CONTRACT.md).
# Run from the repo root. Creates .local/bench/flink/venv with the PyFlink pinned in
# requirements.txt and copies the Kafka SQL connector jar (pom.xml) into
# .local/bench/flink/jars. Idempotent: a marker records the pins it was done for.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
here=$root/bench/peers/flink
dest=$root/.local/bench/flink
venv=$dest/venv
jars=$dest/jars
marker=$dest/.ready

fail() { echo "flink peer setup: $*" >&2; exit 1; }

# The marker holds a digest of the pins, so editing requirements.txt or pom.xml redoes the work.
want=$(cat "$here/requirements.txt" "$here/pom.xml" | sha256sum | cut -d' ' -f1)
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] \
   && [ -x "$venv/bin/python" ] && compgen -G "$jars/flink-sql-connector-kafka-*.jar" >/dev/null; then
  exit 0
fi

command -v java >/dev/null || fail "java not found (PyFlink needs a JDK 11 or 17 on PATH)"
command -v mvn >/dev/null || fail "mvn not found (needed to resolve the Kafka SQL connector jar)"
mkdir -p "$dest"
rm -f "$marker"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || fail "python3 -m venv failed"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" \
  >"$dest/pip.log" 2>&1 || fail "pip install failed, see $dest/pip.log"
"$venv/bin/python" -c "import pyflink.table" 2>>"$dest/pip.log" \
  || fail "pyflink does not import, see $dest/pip.log"

rm -rf "$jars"
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" package -Dflink.jars="$jars" \
  >"$dest/mvn.log" 2>&1 || fail "mvn could not resolve the Kafka SQL connector, see $dest/mvn.log"
compgen -G "$jars/flink-sql-connector-kafka-*.jar" >/dev/null || fail "no connector jar in $jars"

echo "$want" >"$marker"
