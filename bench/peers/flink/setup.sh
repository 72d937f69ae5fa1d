#!/usr/bin/env bash
# Setup for the Flink SQL peer of `make bench` (see bench/peers/CONTRACT.md): its venv
# .local/bench/flink/venv with the PyFlink pinned in requirements.txt, and the Kafka SQL
# connector jar (pom.xml) in .local/bench/flink/jars.
source "$(dirname "$0")/../setup-lib.sh"
peer_init flink requirements.txt pom.xml
jars=$peer_dest/jars
peer_is_ready '[ -x "$peer_python" ]' 'compgen -G "$jars/flink-sql-connector-kafka-*.jar" >/dev/null'
command -v java >/dev/null || fail "java not found (PyFlink needs a JDK 11 or 17 on PATH)"
peer_venv pyflink.table
peer_mvn "$jars" "flink-sql-connector-kafka-*.jar" flink.jars
peer_done
