"""The local PostgreSQL of scripts/pg.sh (`make pg-up`): the contract's database and role,
idempotent start, a second server beside it, loopback only, and its refusals."""

import os
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.integration.kafka_io import ROOT

pytestmark = pytest.mark.integration
PG_SH = str(ROOT / "scripts/pg.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_sh(command: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([PG_SH, command], env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=120)


def _listening_addresses(port: int) -> set:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_the_fixture_dsn_connects_as_the_superuser_clickstream(postgres):
    with psycopg.connect(postgres) as conn:
        user, database, superuser, encoding = conn.execute(
            "SELECT current_user, current_database(), rolsuper, pg_encoding_to_char(encoding)"
            " FROM pg_roles, pg_database WHERE rolname = current_user"
            " AND datname = current_database()").fetchone()
        assert (user, database, superuser, encoding) == ("clickstream", "clickstream", True, "UTF8")
        conn.execute("CREATE TEMP TABLE t (x integer)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT sum(x) FROM t").fetchone() == (1,)


def test_up_twice_returns_at_once_and_status_answers(postgres):
    port = str(conninfo_to_dict(postgres)["port"])
    started = time.monotonic()
    first = _pg_sh("up", PG_PORT=port)
    second = _pg_sh("up", PG_PORT=port)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert time.monotonic() - started < 10
    assert second.stdout.startswith("pg: already running") or "answers" in second.stdout
    assert len(second.stdout.splitlines()) == 1
    assert _pg_sh("status", PG_PORT=port).returncode == 0


def test_it_listens_on_127_0_0_1_only_and_trusts_nothing_but_loopback(postgres):
    port = int(conninfo_to_dict(postgres)["port"])
    with psycopg.connect(postgres) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        rules = conn.execute("SELECT type, address FROM pg_hba_file_rules").fetchall()
    assert {address for kind, address in rules if kind != "local"} <= {"127.0.0.1", "::1"}
    assert _listening_addresses(port) == {"127.0.0.1"}
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://clickstream@127.0.0.2:{port}/clickstream",
                        connect_timeout=3).close()


def test_a_second_server_starts_beside_it_and_stops(own_postgres):
    port = _free_port()
    server = own_postgres(port)
    assert server.run("status").returncode == 0
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "clickstream", "clickstream")
    assert (server.home / f"data-{port}" / "PG_VERSION").exists()
    assert (server.home / "log" / f"postgres-{port}.log").stat().st_size > 0
    if os.getuid() == 0:  # PostgreSQL refuses root: the server runs as an unprivileged user
        pid = int((server.home / f"data-{port}" / "postmaster.pid").read_text().split()[0])
        assert os.stat(f"/proc/{pid}").st_uid != 0
    again = server.up()
    assert again.stdout.startswith("pg: already running")

    stopped = server.down()
    assert stopped.returncode == 0 and stopped.stdout.strip() == "pg: stopped"
    assert server.run("status").returncode != 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn, connect_timeout=3).close()
    assert server.down().stdout.strip() == "pg: not running"

    # the data survive a restart
    server.up()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x integer)")
    server.down()
    server.up()
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)


def test_without_server_binaries_it_says_so_in_one_line(tmp_path):
    done = _pg_sh("up", PG_BINDIR=str(tmp_path), PG_HOME=str(tmp_path / "pg"),
                  PG_PORT=str(_free_port()))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "holds no postgres server binary" in done.stderr


def test_a_bad_port_is_refused_in_one_line(tmp_path):
    done = _pg_sh("up", PG_PORT="15432x", PG_HOME=str(tmp_path / "pg"))
    assert done.returncode == 1
    assert done.stderr == "pg: PG_PORT='15432x' is not a port number\n"


@pytest.mark.skipif(os.getuid() != 0, reason="as root only: the server's user must reach PG_HOME")
def test_as_root_a_private_pg_home_is_refused_in_one_line(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    done = _pg_sh("up", PG_HOME=str(private / "pg"), PG_PORT=str(_free_port()))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "cannot enter" in done.stderr and "set PG_HOME" in done.stderr
