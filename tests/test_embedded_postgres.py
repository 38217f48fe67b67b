"""The lab's PostgreSQL: a cluster of its own, run as an unprivileged user when we are root
(PostgreSQL refuses root), its data kept across a stop and a start, its directory removed
at the end when it was made here."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from load_tests.embedded import EmbeddedPostgres, EmbeddedServerError, RunAs, postgres_run_as, reachable_by

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root needs a user to run PostgreSQL as")


@as_root
def test_as_root_a_missing_run_user_says_how_to_make_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_LAB_POSTGRES_USER", "acd-no-such-user")
    with pytest.raises(EmbeddedServerError, match="refuses to run as root") as caught:
        postgres_run_as()
    assert "scripts/bootstrap.sh" in str(caught.value) and "useradd" in str(caught.value)
    monkeypatch.setenv("ACD_LAB_POSTGRES_USER", "root")
    with pytest.raises(EmbeddedServerError, match="is root"):
        postgres_run_as()


def test_a_directory_behind_a_private_one_is_not_reachable(tmp_path: Path) -> None:
    private = tmp_path / "private"
    (private / "inner").mkdir(parents=True)
    private.chmod(0o700)
    stranger = RunAs("stranger", uid=os.geteuid() + 4242, gid=4242)
    assert not reachable_by(private / "inner", stranger)
    private.chmod(0o711)
    assert reachable_by(private / "inner", stranger) == reachable_by(tmp_path, stranger)


async def test_a_cluster_keeps_its_data_across_a_restart_and_leaves_nothing_behind(tmp_path: Path) -> None:
    async with EmbeddedPostgres(tmp_path / "pg") as server:
        connection = await asyncpg.connect(server.dsn())
        assert await connection.fetchval("SHOW server_encoding") == "UTF8"
        running_as = await connection.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'acd'")
        await connection.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        await connection.close()
        assert running_as == "acd"
        await server.stop()
        await server.start()
        connection = await asyncpg.connect(server.dsn())
        assert await connection.fetchval("SELECT n FROM kept") == 7
        await connection.close()
        root = server.root
        made_here = root != (tmp_path / "pg").absolute()
        if os.geteuid() == 0:
            assert made_here and root.stat().st_uid != 0  # pytest's tmp dir is root's alone
    assert root.exists() != made_here
