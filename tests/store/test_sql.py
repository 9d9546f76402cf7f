"""SqlStore against SQLite (tmp_path) and PostgreSQL (a fresh database per test on 127.0.0.1).

PostgreSQL tests fail (they do not skip) when the server is unreachable; point them elsewhere
with PRATAI_TEST_PG_URL (a server URL whose database may be created and dropped).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pratai.core.models import (
    ApiKey,
    BuildState,
    Function,
    FunctionVersion,
    Invocation,
    Job,
    JobKind,
    Project,
    Role,
    Route,
    SavedJob,
    Status,
    Trigger,
    TriggerKind,
    new_id,
)
from pratai.errors import Conflict
from pratai.store import open_store
from pratai.store.sql import SqlStore, normalize_url
from pratai.store.tables import metadata
from tests.helpers import fresh_pg_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'pratai.sqlite3'}"
        return
    with fresh_pg_database("pratai_test") as url:
        yield url


@pytest_asyncio.fixture(loop_scope="function")
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    s = SqlStore(db_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _project(store: SqlStore, name: str | None = None) -> Project:
    p = Project(id=new_id(), name=name or f"p-{new_id()[:10]}")
    await store.create_project(p)
    return p


def _first_version(f: Function) -> FunctionVersion:
    return FunctionVersion(
        function_id=f.id,
        version=1,
        package_digest="0" * 64,
        handler="m.main",
        requirements_hash=None,
    )


async def _function(store: SqlStore, project: Project, name: str = "hello") -> Function:
    f = Function(id=new_id(), project_id=project.id, name=name)
    await store.create_function(f, _first_version(f))
    return f


def _invocation(f: Function, **kw: object) -> Invocation:
    return Invocation(
        id=new_id(),
        project_id=f.project_id,
        function_id=f.id,
        function_name=f.name,
        version=1,
        mode="sync",
        **kw,  # type: ignore[arg-type]
    )


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert SqlStore("postgresql://postgres@127.0.0.1/x").engine.driver == "psycopg"


async def test_open_is_idempotent_and_schema_matches_tables(db_url: str) -> None:
    s = open_store(db_url)
    await s.open()
    p = await _project(s)  # type: ignore[arg-type]
    await s.close()
    s2 = SqlStore(db_url)
    await s2.open()
    await s2.open()  # a second open on the same instance is a no-op
    assert await s2.get_project(p.id) == p
    await s2.close()
    s3 = SqlStore(db_url)
    await s3.open()  # migrating an up-to-date database again changes nothing
    await s3.close()

    engine = SqlStore(db_url).engine
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        names = set(sa.inspect(conn).get_table_names())
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert diffs == []
    assert names == set(metadata.tables) | {"alembic_version"}
    assert version == "0006"
    if db_url.startswith("sqlite"):
        assert Path(db_url.removeprefix("sqlite:///")).exists()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    s = SqlStore(f"sqlite:///{tmp_path / 'a' / 'b' / 'db.sqlite3'}")
    await s.open()
    try:

        def pragmas(c: sa.Connection) -> tuple[object, ...]:
            return tuple(
                c.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            )

        assert await s._run(pragmas) == ("wal", 1, 1, 5000)
    finally:
        await s.close()


def test_concurrent_first_open_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    code = (
        "import asyncio, sys\n"
        "from pratai.store.sql import SqlStore\n"
        "async def main():\n"
        "    s = SqlStore(sys.argv[1]); await s.open(); await s.close()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], env=env, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    engine = SqlStore(url).engine
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


async def test_projects_and_keys(store: SqlStore) -> None:
    p = await _project(store, "acme")
    assert await store.get_project(p.id) == p
    assert await store.get_project_by_name("acme") == p
    assert await store.get_project("nope") is None
    assert await store.get_project_by_name("nope") is None
    with pytest.raises(Conflict):
        await store.create_project(Project(id=new_id(), name="acme"))
    # the store still works after a rolled-back conflict
    other = await _project(store, "other")

    k1 = ApiKey(id="k1", project_id=p.id, role=Role.ADMIN, secret_hash="h1", name="ci")
    k2 = ApiKey(
        id="k2",
        project_id=p.id,
        role=Role.INVOKER,
        secret_hash="h2",
        created_at=k1.created_at + 1,
        expires_at=k1.created_at + 3600.25,
        revoked_at=k1.created_at + 10.5,
    )
    k3 = ApiKey(id="k3", project_id=other.id, role=Role.VIEWER, secret_hash="h3")
    for k in (k1, k2, k3):
        await store.create_key(k)
    got = await store.get_key("k2")
    assert got == k2
    assert got is not None and got.role is Role.INVOKER
    assert await store.get_key("missing") is None
    assert await store.list_keys(p.id) == [k1, k2]
    with pytest.raises(Conflict):
        await store.create_key(k1)


async def test_a_guarded_revoke_keeps_one_lasting_admin_key(store: SqlStore) -> None:
    p = await _project(store)

    def admin(key_id: str, **kw: float) -> ApiKey:
        return ApiKey(id=key_id, project_id=p.id, role=Role.ADMIN, secret_hash="h", **kw)

    expiring = admin("expiring", expires_at=time.time() + 3600)
    for key in (admin("a"), admin("b"), expiring):
        await store.create_key(key)
    assert await store.revoke_key("a", 1.0, keep_admin_in=p.id)
    # "b" is the last admin key that never expires: an expiring one does not count
    assert not await store.revoke_key("b", 2.0, keep_admin_in=p.id)
    assert (await store.get_key("b")).revoked_at is None  # type: ignore[union-attr]
    assert await store.revoke_key("expiring", 3.0, keep_admin_in=p.id)
    assert await store.revoke_key("b", 4.0)  # unguarded, as for keys of other projects


async def test_concurrent_revokes_of_the_last_two_admin_keys_leave_one(store: SqlStore) -> None:
    """Each revoke alone would be allowed; both at once must not leave the project empty."""
    p = await _project(store)
    for round_ in range(20):
        ids = [f"r{round_}a", f"r{round_}b"]
        for key_id in ids:
            await store.create_key(
                ApiKey(id=key_id, project_id=p.id, role=Role.ADMIN, secret_hash="h")
            )
        done = await asyncio.gather(
            *(store.revoke_key(key_id, time.time(), keep_admin_in=p.id) for key_id in ids)
        )
        assert sorted(done) == [False, True], f"round {round_}: {done}"
        # keep this round's survivor out of the next round
        survivor = ids[done.index(False)]
        assert await store.revoke_key(survivor, time.time())


async def test_functions(store: SqlStore) -> None:
    p = await _project(store)
    q = await _project(store)
    f = Function(
        id=new_id(),
        project_id=p.id,
        name="music_tag",
        description="tags music",
        memory_mb=256,
        timeout_s=12.5,
        network=True,
        concurrency=2,
        runtime="node",
        latest_version=3,
        active_version=2,
    )
    await store.create_function(f, _first_version(f))
    g = await _function(store, p, "alpha")
    await _function(store, q, "music_tag")  # same name in another project is fine
    with pytest.raises(Conflict):
        await _function(store, p, "music_tag")

    got = await store.get_function(p.id, "music_tag")
    assert got == f
    assert got is not None and got.network is True and isinstance(got.timeout_s, float)
    assert await store.get_function_by_id(f.id) == f
    assert await store.get_function(q.id, "alpha") is None
    assert await store.get_function_by_id("missing") is None
    assert [x.name for x in await store.list_functions(p.id)] == ["alpha", "music_tag"]

    f.description = "changed"
    f.latest_version = 4
    f.active_version = None
    f.updated_at += 100
    await store.update_function(f)
    assert await store.get_function_by_id(f.id) == f
    assert await store.get_function_by_id(g.id) == g


def _route(f: Function, method: str, path: str) -> Route:
    return Route(id=new_id(), project_id=f.project_id, function_id=f.id, method=method, path=path)


async def test_create_function_stores_all_of_a_deploy_or_nothing(store: SqlStore) -> None:
    p = await _project(store)
    f = Function(id=new_id(), project_id=p.id, name="api")
    trigger = Trigger(
        id=new_id(), project_id=p.id, function_id=f.id, kind=TriggerKind.MESSAGE, topic="t"
    )
    version = _first_version(f)
    await store.create_function(f, version, [trigger], [_route(f, "GET", "/p")])
    assert await store.list_versions(f.id) == [version]
    assert await store.list_triggers(p.id, function_id=f.id) == [trigger]
    assert [(r.method, r.path) for r in await store.list_routes(p.id, f.id)] == [("GET", "/p")]

    clash = Function(id=new_id(), project_id=p.id, name="clash")
    its_trigger = Trigger(
        id=new_id(), project_id=p.id, function_id=clash.id, kind=TriggerKind.MESSAGE, topic="t"
    )
    routes = [_route(clash, "POST", "/p"), _route(clash, "GET", "/p")]
    with pytest.raises(Conflict, match="the project already routes GET /p"):
        await store.create_function(clash, _first_version(clash), [its_trigger], routes)
    twin = Function(id=new_id(), project_id=p.id, name="api")
    with pytest.raises(Conflict, match="function 'api' already exists"):
        await store.create_function(twin, _first_version(twin), (), [_route(twin, "PUT", "/q")])

    assert [x.name for x in await store.list_functions(p.id)] == ["api"]
    for gone in (clash, twin):
        assert await store.get_function_by_id(gone.id) is None
        assert await store.list_versions(gone.id) == []
    assert await store.list_triggers(p.id) == [trigger]
    assert [(r.method, r.path) for r in await store.list_routes(p.id)] == [("GET", "/p")]


async def test_versions(store: SqlStore) -> None:
    p = await _project(store)
    f = Function(id=new_id(), project_id=p.id, name="hello")
    v1 = FunctionVersion(
        function_id=f.id,
        version=1,
        package_digest="a" * 64,
        handler="main.main",
        requirements_hash=None,
    )
    v2 = FunctionVersion(
        function_id=f.id,
        version=2,
        package_digest="b" * 64,
        handler="main.main",
        requirements_hash="c" * 64,
        state=BuildState.READY,
        build_log="ok",
    )
    await store.create_function(f, v2)  # versions stored out of order: listed in order
    await store.add_version(v1)
    with pytest.raises(Conflict):
        await store.add_version(v1)
    got = await store.get_version(f.id, 1)
    assert got == v1
    assert got is not None and got.state is BuildState.BUILDING
    assert await store.get_version(f.id, 3) is None
    assert await store.list_versions(f.id) == [v1, v2]

    v1.state = BuildState.BUILD_FAILED
    v1.build_log = "boom\n" * 100
    await store.update_version(v1)
    assert await store.get_version(f.id, 1) == v1
    assert await store.get_version(f.id, 2) == v2


async def test_invocation_round_trip(store: SqlStore) -> None:
    p = await _project(store)
    f = await _function(store, p)
    inv = _invocation(f, payload=b"\x00\xff binary \x01", content_type="application/octet-stream")
    await store.create_invocation(inv)
    got = await store.get_invocation(p.id, inv.id)
    assert got == inv
    assert got is not None and got.status is Status.QUEUED and isinstance(got.payload, bytes)
    assert await store.get_invocation("other-project", inv.id) is None
    assert await store.get_invocation_by_id(inv.id) == inv
    assert await store.get_invocation_by_id("missing") is None

    inv.status = Status.FAILED
    inv.error = {"type": "ValueError", "message": "bad ü", "traceback": ["a", "b"], "n": 1}
    inv.result = '{"ok": false}'
    inv.stdout = "out" * 1000
    inv.stderr = "err"
    inv.cold_start = True
    inv.init_ms = 12.345
    inv.duration_ms = 0.001
    inv.peak_memory_kb = 2**40
    inv.attempt = 3
    inv.started_at = inv.created_at + 0.000123
    inv.finished_at = inv.created_at + 1.5
    await store.update_invocation(inv)
    assert await store.get_invocation_by_id(inv.id) == inv

    inv.cold_start = False
    inv.error = None
    await store.update_invocation(inv)
    got = await store.get_invocation_by_id(inv.id)
    assert got is not None and got.cold_start is False and got.error is None


async def test_list_invocations(store: SqlStore) -> None:
    p = await _project(store)
    other = await _project(store)
    f = await _function(store, p, "f")
    g = await _function(store, p, "g")
    h = await _function(store, other, "f")
    base = 1_700_000_000.0
    invs = [_invocation(f if i % 2 == 0 else g, created_at=base + i) for i in range(6)]
    for i, inv in enumerate(invs):
        if i in (1, 2, 4):
            inv.status = Status.SUCCEEDED
            inv.finished_at = base + 100 - i  # finish order: 4, 2, 1
        await store.create_invocation(inv)
    await store.create_invocation(_invocation(h, created_at=base + 50))

    ids = [i.id for i in invs]
    assert [i.id for i in await store.list_invocations(p.id)] == ids[::-1]
    assert [i.id for i in await store.list_invocations(p.id, oldest_first=True)] == ids
    assert [i.id for i in await store.list_invocations(p.id, limit=2)] == [ids[5], ids[4]]
    assert [i.id for i in await store.list_invocations(p.id, f.id)] == [ids[4], ids[2], ids[0]]
    assert [i.id for i in await store.list_invocations(p.id, g.id, oldest_first=True)] == [
        ids[1],
        ids[3],
        ids[5],
    ]
    follow = await store.list_invocations(p.id, finished_after=base + 96)
    assert [i.id for i in follow] == [ids[2], ids[1]]  # strictly after, by finish time
    assert await store.list_invocations(p.id, finished_after=base + 99) == []
    assert await store.list_invocations("nobody") == []


async def test_invocations_with_status(store: SqlStore) -> None:
    p = await _project(store)
    f = await _function(store, p)
    q, r, s = (_invocation(f, status=st) for st in (Status.QUEUED, Status.RUNNING, Status.FAILED))
    q.created_at, r.created_at, s.created_at = 3.0, 2.0, 1.0
    for inv in (q, r, s):
        await store.create_invocation(inv)
    got = await store.invocations_with_status([Status.QUEUED, Status.RUNNING])
    assert [i.id for i in got] == [r.id, q.id]
    assert await store.invocations_with_status([]) == []
    assert await store.invocations_with_status([Status.CANCELLED]) == []


async def test_delete_function_cascades(store: SqlStore) -> None:
    p = await _project(store)
    f = await _function(store, p, "doomed")
    keep = await _function(store, p, "kept")
    gone, kept = _invocation(f), _invocation(keep)
    await store.create_invocation(gone)
    await store.create_invocation(kept)

    await store.delete_function(f.id)
    assert await store.get_function_by_id(f.id) is None
    assert await store.list_versions(f.id) == []
    assert await store.get_invocation_by_id(gone.id) is None
    assert await store.get_invocation_by_id(kept.id) == kept
    assert len(await store.list_versions(keep.id)) == 1
    await store.delete_function(f.id)  # deleting again is harmless
    await _function(store, p, "doomed")  # the name is free again


async def test_concurrent_calls(store: SqlStore) -> None:
    p = await _project(store)
    f = await _function(store, p)
    invs = [_invocation(f, created_at=float(i)) for i in range(200)]
    await asyncio.gather(*(store.create_invocation(i) for i in invs))
    for inv in invs:
        inv.status = Status.SUCCEEDED
    await asyncio.gather(*(store.update_invocation(i) for i in invs))
    got = await store.list_invocations(p.id, limit=1000)
    assert len(got) == 200 and all(i.status is Status.SUCCEEDED for i in got)


async def test_closed_store_refuses_work(db_url: str) -> None:
    s = SqlStore(db_url)
    with pytest.raises(RuntimeError):
        await s.get_project("x")
    await s.open()
    await s.close()
    with pytest.raises(RuntimeError):
        await s.get_project("x")
    await s.close()


async def test_jobs_round_trip_and_conditional_updates(store: SqlStore) -> None:
    project = await _project(store)
    job = Job(
        id=new_id(),
        project_id=project.id,
        kind=JobKind.COMMAND,
        runtime="python3.11",
        command=["echo", "hi"],
        env={"K": "V"},
        stdin=b"\x00in",
    )
    await store.create_job(job)
    with pytest.raises(Conflict):
        await store.create_job(job)
    job.status = Status.RUNNING
    assert await store.update_job(job, only_if=Status.QUEUED)
    assert not await store.update_job(job, only_if=Status.QUEUED)  # it is running now
    job.status, job.exit_code, job.result = Status.SUCCEEDED, 0, b"\x80pickle"
    job.error = {"type": "X", "message": "m"}
    assert await store.update_job(job, only_if=Status.RUNNING)
    loaded = await store.get_job(job.id)
    assert loaded == job
    assert [j.id for j in await store.list_jobs(project.id, status=Status.SUCCEEDED)] == [job.id]
    assert await store.list_jobs((await _project(store)).id) == []
    assert job.id not in [j.id for j in await store.unfinished_jobs()]

    saved = SavedJob(new_id(), project.id, "nightly", "python3.11", ["true"], env={"A": "1"})
    await store.create_saved_job(saved)
    with pytest.raises(Conflict):
        await store.create_saved_job(SavedJob(new_id(), project.id, "nightly", "x", ["y"]))
    assert saved not in await store.list_saved_jobs(None)  # not scheduled yet
    saved.cron = "0 * * * *"
    await store.update_saved_job(saved)
    assert saved in await store.list_saved_jobs(None)
    assert await store.get_saved_job(project.id, "nightly") == saved
    await store.delete_saved_job(saved.id)
    assert await store.list_saved_jobs(project.id) == []
