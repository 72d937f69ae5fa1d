#!/usr/bin/env bash
# Setup for the Kafka Streams peer of `make bench` (see bench/peers/CONTRACT.md): its venv
# .local/bench/kstreams/venv (standard library only: job.py just starts java), Kafka Streams
# and its runtime jars (pom.xml) in .local/bench/kstreams/jars, and ClickstreamJob.java
# compiled against them into .local/bench/kstreams/classes.
source "$(dirname "$0")/../setup-lib.sh"
peer_init kstreams requirements.txt pom.xml ClickstreamJob.java
jars=$peer_dest/jars
classes=$peer_dest/classes
peer_is_ready '[ -x "$peer_python" ]' 'compgen -G "$jars/kafka-streams-*.jar" >/dev/null' \
  '[ -f "$classes/ClickstreamJob.class" ]'
command -v java >/dev/null || fail "java not found (Kafka Streams needs a JDK 17 on PATH)"
command -v javac >/dev/null || fail "javac not found (the job is compiled here; needs a JDK 17)"
peer_venv json
peer_mvn "$jars" "kafka-streams-*.jar" kstreams.jars
rm -rf "$classes"
mkdir -p "$classes"
javac -d "$classes" -cp "$jars/*" "$peer_here/ClickstreamJob.java" >"$peer_dest/javac.log" 2>&1 \
  || fail "javac failed, see $peer_dest/javac.log"
peer_done
