"""A real Kafka broker for the integration tests: the one at CLICKSTREAM_BROKERS when it
answers, else a local one started here with scripts/kafka.sh (and stopped afterwards).
Likewise a PostgreSQL: the one at CLICKSTREAM_POSTGRES_DSN, else scripts/pg.sh's."""

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from clickstream.io.kafka import broker_answers
from tests.integration.kafka_io import ROOT, make_topics


@pytest.fixture(scope="session")
def brokers():
    address = os.environ.get("CLICKSTREAM_BROKERS", "127.0.0.1:9092").split(",")[0]
    if broker_answers(address):
        yield address
        return
    port = address.rpartition(":")[2]
    env = dict(os.environ, KAFKA_PORT=port)
    subprocess.run([str(ROOT / "scripts/kafka.sh"), "up"], check=True, env=env)
    try:
        yield address
    finally:
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "down"], env=env)


@pytest.fixture
def topics(brokers):
    """Fresh input/output topics for one test (2 input partitions, 2 per output)."""
    return make_topics(brokers)


class OwnBroker:
    """A broker of a test's own (its port, its data): for tests that stop the broker or
    need a SASL listener, so the shared one is never disturbed."""

    def __init__(self, home, port: int, **extra_env):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_HOME=str(home), **extra_env)

    def up(self):
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "up"], check=True, env=self.env,
                       stdout=subprocess.DEVNULL)

    def down(self):
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "down"], env=self.env,
                       stdout=subprocess.DEVNULL)

    def kill(self):
        pid = int((Path(self.env["KAFKA_HOME"]) / f"broker-{self.port}.pid").read_text())
        os.kill(pid, 9)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


@pytest.fixture
def own_broker(tmp_path_factory):
    brokers = []

    def start(port: int, **extra_env) -> OwnBroker:
        broker = OwnBroker(tmp_path_factory.mktemp(f"kafka-{port}"), port, **extra_env)
        broker.up()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.down()


POSTGRES_DSN = "postgresql://clickstream@127.0.0.1:15432/clickstream"


def postgres_answers(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres():
    """A DSN (libpq URL) of a PostgreSQL with the database and superuser role `clickstream`."""
    from psycopg.conninfo import conninfo_to_dict

    dsn = os.environ.get("CLICKSTREAM_POSTGRES_DSN", POSTGRES_DSN)
    if postgres_answers(dsn):
        yield dsn
        return
    env = dict(os.environ, PG_PORT=str(conninfo_to_dict(dsn).get("port", 5432)))
    subprocess.run([str(ROOT / "scripts/pg.sh"), "up"], check=True, env=env)
    try:
        yield dsn
    finally:
        subprocess.run([str(ROOT / "scripts/pg.sh"), "down"], env=env)


@pytest.fixture
def database(postgres):
    """A DSN of a fresh database of its own on the `postgres` server, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


class OwnPostgres:
    """A PostgreSQL of a test's own (its port, its data): for tests that stop the database, so
    the shared one is never disturbed."""

    def __init__(self, home, port: int):
        self.port = port
        self.home = Path(home)
        self.dsn = f"postgresql://clickstream@127.0.0.1:{port}/clickstream"
        self.env = dict(os.environ, PG_PORT=str(port), PG_HOME=str(home))

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "scripts/pg.sh"), command], env=self.env,
                              capture_output=True, text=True)

    def up(self):
        done = self.run("up")
        assert done.returncode == 0, done.stderr
        return done

    def down(self):
        return self.run("down")


@pytest.fixture
def own_postgres():
    """Start PostgreSQL servers of the test's own: `own_postgres(port)`. Their data lives in a
    fresh directory under the system's temp dir that everyone may enter (as root, pg.sh runs
    the server as an unprivileged user, which cannot enter pytest's private tmp_path)."""
    servers = []

    def start(port: int) -> OwnPostgres:
        base = Path(tempfile.mkdtemp(prefix=f"clickstream-pg-{port}-"))
        base.chmod(0o755)
        server = OwnPostgres(base / "pg", port)
        servers.append(server)
        server.up()
        return server

    yield start
    for server in servers:
        server.down()
        shutil.rmtree(server.home.parent, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Soak tests run only when asked for (`make soak`, i.e. CLICKSTREAM_SOAK=1)."""
    if os.environ.get("CLICKSTREAM_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="long soak: run with `make soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
