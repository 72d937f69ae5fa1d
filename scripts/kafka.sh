#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development and tests.
#   scripts/kafka.sh up     resolve the jars (mvn, once), format the log dir (once), start, wait until it answers
#   scripts/kafka.sh down   stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh status exit 0 when it answers
# Idempotent: `up` on a running broker returns at once. Data, logs and jars live under .local/ (git-ignored).
# KAFKA_PORT (default 9092) and KAFKA_HOME (default .local/kafka) let tests run a second broker beside it.
# KAFKA_SASL_USER and KAFKA_SASL_PASSWORD add a SASL_PLAINTEXT (PLAIN) listener on KAFKA_PORT + 2.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${KAFKA_PORT:-9092}
cport=$((port + 1))
home=${KAFKA_HOME:-$root/.local/kafka}
libs=$root/.local/kafka/libs
pidfile=$home/broker-$port.pid
data=$home/data-$port
conf=$home/server-$port.properties

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

resolve_jars() {
  if [ ! -f "$libs/.resolved" ]; then
    echo "kafka: resolving broker jars with mvn (first run only)" >&2
    mvn -q -B -Dstyle.color=never -f "$root/deploy/kafka/pom.xml" package -Dkafka.libs="$libs" >&2
    touch "$libs/.resolved"
  fi
}

write_config() {
  mkdir -p "$home"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  local sasl=""
  if [ -n "${KAFKA_SASL_USER:-}" ]; then
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$((port + 2))"
    advertised="$advertised,SASL_PLAINTEXT://127.0.0.1:$((port + 2))"
    protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
    sasl="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${KAFKA_SASL_USER}=\"${KAFKA_SASL_PASSWORD}\";"
  fi
  cat > "$conf" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
$sasl
log.dirs=$data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
message.max.bytes=1048588
PROPS
  cat > "$home/log4j2.yaml" <<'LOG'
Configuration:
  Appenders:
    File:
      name: File
      fileName: "${sys:kafka.logs.dir}/server.log"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: File
    Logger:
      - name: kafka
        level: INFO
      - name: org.apache.kafka
        level: WARN
LOG
}

java_cmd() {
  ${JAVA_EXEC:-} java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$home/logs-$port" -Dlog4j2.configurationFile="$home/log4j2.yaml" \
    -cp "$libs/*" "$@"
}

up() {
  if running_pid >/dev/null && answers; then echo "kafka: already running on 127.0.0.1:$port"; return 0; fi
  if answers; then echo "kafka: something else answers on 127.0.0.1:$port; using it"; return 0; fi
  resolve_jars
  write_config
  mkdir -p "$home/logs-$port"
  if [ ! -f "$data/meta.properties" ]; then
    java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" -c "$conf" >/dev/null
  fi
  nohup setsid "$0" __run >/dev/null 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if answers; then echo "kafka: up on 127.0.0.1:$port (pid $(cat "$pidfile"), logs $home/logs-$port)"; return 0; fi
    if ! running_pid >/dev/null; then
      echo "kafka: broker exited during start; last log lines:" >&2
      tail -n 20 "$home/logs-$port/server.log" "$home/logs-$port/stdout.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
  echo "kafka: no answer on 127.0.0.1:$port after 60 s" >&2
  return 1
}

down() {
  local pid
  if ! pid=$(running_pid); then echo "kafka: not running"; rm -f "$pidfile"; return 0; fi
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) answers ;;
  __run) shift; exec > "$home/logs-$port/stdout.log" 2>&1; JAVA_EXEC=exec java_cmd kafka.Kafka "$conf" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
