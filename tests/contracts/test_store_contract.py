"""What every `Store` promises, run against each: MemoryStore, SqlStore on SQLite (tmp_path) and
SqlStore on PostgreSQL (a fresh database per test on 127.0.0.1).

PostgreSQL tests fail (they do not skip) when the server is unreachable; point them elsewhere
with PRATAI_TEST_PG_URL (a server URL whose database may be created and dropped).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.core.models import (
    TRIGGERS,
    ApiKey,
    AuditEntry,
    BuildState,
    ConnectorRecord,
    Event,
    Function,
    FunctionVersion,
    Image,
    Invocation,
    InvocationFilter,
    Job,
    JobKind,
    NodeToken,
    Project,
    Role,
    Route,
    SavedJob,
    SavedPayload,
    Status,
    Trigger,
    TriggerKind,
    User,
    new_id,
    trigger_of,
)
from pratai.core.ports import Store
from pratai.errors import Conflict
from pratai.store.memory import MemoryStore
from pratai.store.sql import SqlStore
from tests.helpers import fresh_pg_database

NewStore = Callable[[], Store]


@pytest.fixture(
    params=[pytest.param("memory", marks=pytest.mark.fast), "sqlite", "postgresql"],
)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewStore]:
    """Makes unopened stores; the SQL ones all over the same database."""
    if request.param == "memory":
        yield MemoryStore
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sub' / 'pratai.sqlite3'}"
        yield lambda: SqlStore(url)
    else:
        with fresh_pg_database("pratai_test") as pg_url:
            yield lambda: SqlStore(pg_url)


@pytest_asyncio.fixture(loop_scope="function")
async def store(new_store: NewStore) -> AsyncIterator[Store]:
    s = new_store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _project(store: Store, name: str | None = None) -> Project:
    p = Project(id=new_id(), name=name or f"p-{new_id()[:10]}")
    await store.create_project(p)
    return p


def _version(f: Function, version: int = 1, digest: str = "0" * 64) -> FunctionVersion:
    return FunctionVersion(
        function_id=f.id,
        version=version,
        package_digest=digest,
        handler="m.main",
        requirements_hash=None,
    )


async def _function(
    store: Store, project: Project, name: str = "hello", *routes: tuple[str, str]
) -> Function:
    """A function with its first version and, for each (method, path), a route."""
    f = Function(id=new_id(), project_id=project.id, name=name)
    await store.create_function(f, _version(f), routes=[_route(f, *r) for r in routes])
    return f


def _route(f: Function, method: str, path: str) -> Route:
    return Route(id=new_id(), project_id=f.project_id, function_id=f.id, method=method, path=path)


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


def _event(project: Project, event_id: str, topic: str = "orders", **kw: object) -> Event:
    return Event(project.id, topic, event_id, "/shop", "order.created", **kw)  # type: ignore[arg-type]


# --- projects, keys, users -----------------------------------------------------------------


async def test_projects_and_keys(store: Store) -> None:
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


async def test_a_key_or_function_needs_its_project(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.create_key(ApiKey(id="k", project_id="nope", role=Role.ADMIN, secret_hash="h"))
    orphan = Function(id=new_id(), project_id="nope", name="f")
    with pytest.raises(Conflict):
        await store.create_function(orphan, _version(orphan))
    with pytest.raises(Conflict):
        await store.add_version(_version(orphan))


async def test_projects_and_users_by_name(store: Store) -> None:
    for name in ("zeta", "alpha", "mid"):
        await _project(store, name)
    assert [p.name for p in await store.list_projects()] == ["alpha", "mid", "zeta"]
    olga = User(id=new_id(), name="olga")
    await store.create_user(olga)
    with pytest.raises(Conflict):
        await store.create_user(User(id=new_id(), name="olga"))
    assert await store.get_user_by_name("olga") == olga
    assert await store.get_user_by_name("nobody") is None


async def test_a_guarded_revoke_keeps_one_lasting_admin_key(store: Store) -> None:
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
    assert (await store.get_key("b")).revoked_at == 4.0  # type: ignore[union-attr]
    assert not await store.revoke_key("missing", 5.0)


async def test_concurrent_revokes_of_the_last_two_admin_keys_leave_one(store: Store) -> None:
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


async def test_audit_is_per_project_newest_first(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    for n in range(5):
        await store.add_audit(AuditEntry(p.id, "k1", "POST", f"/v1/x/{n}", 201, at=float(n)))
    await store.add_audit(AuditEntry(q.id, "k2", "GET", "/v1/y", 200, user_id="u"))
    listed = await store.list_audit(p.id, limit=3)
    assert [a.target for a in listed] == ["/v1/x/4", "/v1/x/3", "/v1/x/2"]
    assert all(a.seq is not None for a in listed)
    assert [(a.key_id, a.user_id) for a in await store.list_audit(q.id)] == [("k2", "u")]


async def test_audit_filters_by_action_key_and_time(store: Store) -> None:
    p = await _project(store)
    for n, (key, action) in enumerate([("k1", "POST"), ("k2", "DELETE"), ("k1", "DELETE")] * 2):
        await store.add_audit(AuditEntry(p.id, key, action, f"/v1/x/{n}", 204, at=100.0 + n))
    targets = lambda found: [a.target for a in found]  # noqa: E731
    assert targets(await store.list_audit(p.id, action="DELETE", key_id="k1")) == [
        "/v1/x/5",
        "/v1/x/2",
    ]
    assert targets(await store.list_audit(p.id, since=102.0, until=104.0)) == [
        "/v1/x/3",
        "/v1/x/2",
    ]
    assert targets(await store.list_audit(p.id, key_id="k2", limit=1)) == ["/v1/x/4"]
    assert await store.list_audit(p.id, action="PUT") == []


async def test_node_tokens(store: Store) -> None:
    a = NodeToken(id="nt_a", name="rack-1", secret_hash="h1")
    b = NodeToken(id="nt_b", name="rack 2 (spare)", secret_hash="h2", created_at=a.created_at + 1)
    for token in (b, a):
        await store.create_node_token(token)
    got = await store.get_node_token("nt_b")
    assert got == b and got is not b
    assert await store.get_node_token("missing") is None
    assert await store.list_node_tokens() == [a, b]  # oldest first
    with pytest.raises(Conflict):
        await store.create_node_token(NodeToken(id="nt_a", name="again", secret_hash="h3"))
    assert await store.get_node_token("nt_a") == a  # the conflict changed nothing

    assert await store.revoke_node_token("nt_a", 10.5)
    assert await store.revoke_node_token("nt_a", 20.0)  # again: it keeps its first time
    assert not await store.revoke_node_token("missing", 30.0)
    assert [(t.id, t.revoked_at) for t in await store.list_node_tokens()] == [
        ("nt_a", 10.5),
        ("nt_b", None),
    ]


# --- functions, versions, invocations ---------------------------------------------------


async def test_functions(store: Store) -> None:
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
        secrets={"TOKEN": "api-token"},
        fresh_per_call=True,
    )
    await store.create_function(f, _version(f))
    g = await _function(store, p, "alpha")
    await _function(store, q, "music_tag")  # same name in another project is fine
    with pytest.raises(Conflict):
        await _function(store, p, "music_tag")

    got = await store.get_function(p.id, "music_tag")
    assert got == f
    assert got is not None and got.network is True and isinstance(got.timeout_s, float)
    assert got.fresh_per_call is True
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


async def test_create_function_stores_all_of_a_deploy_or_nothing(store: Store) -> None:
    p = await _project(store)
    f = Function(id=new_id(), project_id=p.id, name="api")
    trigger = Trigger(
        id=new_id(), project_id=p.id, function_id=f.id, kind=TriggerKind.MESSAGE, topic="t"
    )
    version = _version(f)
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
        await store.create_function(clash, _version(clash), [its_trigger], routes)
    twin = Function(id=new_id(), project_id=p.id, name="api")
    with pytest.raises(Conflict, match="function 'api' already exists"):
        await store.create_function(twin, _version(twin), (), [_route(twin, "PUT", "/q")])

    assert [x.name for x in await store.list_functions(p.id)] == ["api"]
    for gone in (clash, twin):
        assert await store.get_function_by_id(gone.id) is None
        assert await store.list_versions(gone.id) == []
    assert await store.list_triggers(p.id) == [trigger]
    assert [(r.method, r.path) for r in await store.list_routes(p.id)] == [("GET", "/p")]


async def test_records_are_copies(store: Store) -> None:
    """Changing a record after storing it, or one read back, changes nothing stored."""
    p = await _project(store)
    f = Function(id=new_id(), project_id=p.id, name="f", secrets={"A": "a"})
    await store.create_function(f, _version(f))
    f.secrets["B"] = "b"
    f.description = "not stored"
    got = await store.get_function_by_id(f.id)
    assert got is not None and got.secrets == {"A": "a"} and got.description == ""
    got.secrets["C"] = "c"
    (await store.list_functions(p.id))[0].memory_mb = 1
    again = await store.get_function_by_id(f.id)
    assert again is not None and again.secrets == {"A": "a"} and again.memory_mb == 128
    assert again is not got


async def test_versions(store: Store) -> None:
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
    assert await store.versions_with_state(BuildState.READY) == [v2]


async def test_invocation_round_trip(store: Store) -> None:
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
    with pytest.raises(Conflict):
        await store.create_invocation(inv)

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


async def test_start_invocation_moves_a_queued_one_once(store: Store) -> None:
    f = await _function(store, await _project(store))
    inv = _invocation(f)
    await store.create_invocation(inv)
    started = await store.start_invocation(inv.id, 123.5)
    assert started is not None and started.id == inv.id
    assert (started.status, started.started_at) == (Status.RUNNING, 123.5)
    assert await store.get_invocation_by_id(inv.id) == started
    assert await store.start_invocation(inv.id, 124.0) is None  # no longer queued
    assert await store.start_invocation("missing", 124.0) is None


async def test_an_update_fenced_by_attempt_stores_only_at_that_attempt(store: Store) -> None:
    f = await _function(store, await _project(store))
    inv = _invocation(f)
    await store.create_invocation(inv)
    late = copy.deepcopy(inv)  # a run of attempt 1, taken over meanwhile
    inv.attempt = 2
    assert await store.update_invocation(inv, attempt=1)  # the takeover: 1 -> 2
    late.status, late.result = Status.SUCCEEDED, '"late"'
    assert not await store.update_invocation(late, attempt=1)
    inv.status, inv.result = Status.SUCCEEDED, '"newer"'
    assert await store.update_invocation(inv, attempt=2)
    got = await store.get_invocation_by_id(inv.id)
    assert got is not None and (got.attempt, got.result) == (2, '"newer"')
    missing = _invocation(f)
    assert not await store.update_invocation(missing, attempt=1)
    assert not await store.update_invocation(missing)


async def test_list_invocations(store: Store) -> None:
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
    assert len(await store.list_invocations(p.id, finished_after=-1.0)) == 3  # finished ones
    assert await store.list_invocations("nobody") == []


async def test_list_invocations_filtered_by_status_trigger_and_time(store: Store) -> None:
    p = await _project(store)
    f = await _function(store, p, "f")
    g = await _function(store, p, "g")
    base = 1_700_000_000.0
    causes: list[dict[str, object]] = [
        {"mode": "sync"},
        {"mode": "async"},
        {"mode": "async", "event_id": "e1", "event_seq": 7},
        {"mode": "async", "event_id": "e2", "parent_id": "up"},  # a result event: chained
        {"mode": "async", "timer_id": "t1"},
        {"mode": "async", "status": Status.RUNNING},
        {"mode": "sync", "status": Status.FAILED},
    ]
    invs = []
    for n, cause in enumerate(causes):
        inv = _invocation(f if n % 2 == 0 else g, created_at=base + n)
        for key, value in cause.items():
            setattr(inv, key, value)
        await store.create_invocation(inv)
        invs.append(inv)
    ids = [i.id for i in invs]

    async def found(function_id: str | None = None, **where: object) -> list[str]:
        wanted = InvocationFilter(**where)  # type: ignore[arg-type]
        listed = await store.list_invocations(p.id, function_id, where=wanted)
        assert all(wanted.matches(i) for i in listed)  # the stores follow the core's rule
        return [i.id for i in listed]

    assert await found() == ids[::-1]
    for trigger in TRIGGERS:
        expected = [i.id for i in reversed(invs) if trigger_of(i) == trigger]
        assert await found(trigger=trigger) == expected, trigger
    assert await found(trigger="chain") == [ids[3]]
    assert await found(trigger="timer") == [ids[4]]
    assert await found(statuses=(Status.RUNNING, Status.FAILED)) == [ids[6], ids[5]]
    assert await found(statuses=(Status.FAILED,), trigger="async") == []
    assert await found(f.id, statuses=(Status.QUEUED,)) == [ids[4], ids[2], ids[0]]
    assert await found(created_after=base + 2, created_before=base + 4) == [ids[3], ids[2]]
    # Pages: a cursor of the last row shown gives the older ones, ties on created_at by id.
    twin = _invocation(f, created_at=base + 3)
    await store.create_invocation(twin)
    newest = await store.list_invocations(p.id, limit=4)
    assert [i.id for i in newest[:3]] == [ids[6], ids[5], ids[4]]
    last = newest[3]
    older = await found(older_than=(last.created_at, last.id))
    assert [last.id, *older] == sorted([ids[3], twin.id], reverse=True) + ids[2::-1]
    assert await found(older_than=(base, ids[0])) == []
    assert await store.list_invocations("nobody", where=InvocationFilter(trigger="sync")) == []


async def test_brief_invocations_leave_out_the_large_fields(store: Store) -> None:
    f = await _function(store, await _project(store))
    inv = _invocation(f, payload=b'{"in": 1}', status=Status.FAILED)
    await store.create_invocation(inv)
    inv.result, inv.stdout, inv.stderr = '"r"', "out\n", "err\n"
    inv.error = {"type": "ValueError", "message": "no", "traceback": "..."}
    inv.duration_ms = 3.5
    await store.update_invocation(inv)
    [brief] = await store.list_invocations(f.project_id, brief=True)
    assert (brief.payload, brief.result, brief.stdout, brief.stderr) == (b"", None, "", "")
    assert (brief.error, brief.duration_ms, brief.status) == (inv.error, 3.5, Status.FAILED)
    [full] = await store.list_invocations(f.project_id)
    assert full == inv


async def test_an_update_keeps_the_payload_given_at_creation(store: Store) -> None:
    f = await _function(store, await _project(store))
    inv = _invocation(f, payload=b'{"keep": true}')
    await store.create_invocation(inv)
    changed = copy.deepcopy(inv)
    changed.payload, changed.status = b"", Status.SUCCEEDED
    assert await store.update_invocation(changed)
    got = await store.get_invocation_by_id(inv.id)
    assert got is not None and (got.payload, got.status) == (b'{"keep": true}', Status.SUCCEEDED)


async def test_invocations_with_status(store: Store) -> None:
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


async def test_invocation_samples_read_a_window_of_a_project_newest_first(store: Store) -> None:
    p = await _project(store)
    other = await _project(store)
    f = await _function(store, p, "f")
    g = await _function(store, p, "g")
    h = await _function(store, other, "f")
    base = 1_700_000_000.0
    rows = [
        (f, Status.SUCCEEDED, 10.0, True),
        (g, Status.FAILED, 30.0, False),
        (f, Status.TIMED_OUT, 1000.0, None),
        (f, Status.QUEUED, None, None),
        (g, Status.RUNNING, None, False),
    ]
    made = []
    for k, (fn, status, duration, cold) in enumerate(rows):
        inv = _invocation(
            fn, status=status, duration_ms=duration, cold_start=cold, created_at=base + k
        )
        inv.payload, inv.result = b"x" * 1000, '"big"'
        await store.create_invocation(inv)
        made.append(inv)
    await store.create_invocation(_invocation(h, created_at=base + 2, status=Status.FAILED))

    every = await store.invocation_samples(p.id)
    assert [s.id for s in every] == [i.id for i in made[::-1]]
    newest = every[0]
    assert (newest.function_id, newest.status) == (g.id, Status.RUNNING)
    assert newest.created_at == base + 4
    assert (newest.duration_ms, newest.cold_start) == (None, False)
    third = every[2]
    assert (third.status, third.duration_ms, third.cold_start) == (Status.TIMED_OUT, 1000.0, None)
    assert every[4].cold_start is True and every[4].duration_ms == 10.0

    since = await store.invocation_samples(p.id, since=base + 2)  # at or after
    assert [s.id for s in since] == [made[4].id, made[3].id, made[2].id]
    of_f = await store.invocation_samples(p.id, function_id=f.id, since=base + 1)
    assert [s.id for s in of_f] == [made[3].id, made[2].id]
    errors = await store.invocation_samples(p.id, statuses=[Status.FAILED, Status.TIMED_OUT])
    assert [s.id for s in errors] == [made[2].id, made[1].id]  # not the other project's
    assert [s.id for s in await store.invocation_samples(p.id, limit=2)] == [
        made[4].id,
        made[3].id,
    ]
    newest_of_f = await store.invocation_samples(p.id, function_id=f.id, limit=1)
    assert [s.id for s in newest_of_f] == [made[3].id]
    assert await store.invocation_samples(p.id, statuses=[]) == []
    assert await store.invocation_samples(p.id, since=base + 5) == []
    assert await store.invocation_samples("nobody") == []


async def test_count_invocations_and_jobs_by_project_and_status(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    f, g = await _function(store, p), await _function(store, q)
    statuses = [Status.QUEUED, Status.QUEUED, Status.RUNNING, Status.SUCCEEDED]
    for fn, status in [(f, st) for st in statuses] + [(g, Status.QUEUED)]:
        await store.create_invocation(_invocation(fn, status=status))
        job = Job(new_id(), fn.project_id, JobKind.COMMAND, "sh")
        job.status = status
        await store.create_job(job)
    for count in (store.count_invocations, store.count_jobs):
        got = await count([Status.QUEUED, Status.RUNNING])
        mine = {key: n for key, n in got.items() if key[0] in (p.id, q.id)}  # a shared database
        assert mine == {(p.id, Status.QUEUED): 2, (p.id, Status.RUNNING): 1,
                        (q.id, Status.QUEUED): 1}  # fmt: skip
        assert await count([]) == {}


async def test_delete_function_cascades(store: Store) -> None:
    p = await _project(store)
    f = await _function(store, p, "doomed", ("GET", "/doomed"))
    keep = await _function(store, p, "kept", ("GET", "/kept"))
    for fn in (f, keep):
        await store.create_trigger(Trigger(new_id(), p.id, fn.id, TriggerKind.MESSAGE, topic="t"))
    gone, kept = _invocation(f), _invocation(keep)
    await store.create_invocation(gone)
    await store.create_invocation(kept)

    await store.delete_function(f.id)
    assert await store.get_function_by_id(f.id) is None
    assert await store.list_versions(f.id) == []
    assert await store.get_invocation_by_id(gone.id) is None
    assert await store.get_invocation_by_id(kept.id) == kept
    assert len(await store.list_versions(keep.id)) == 1
    assert [t.function_id for t in await store.list_triggers(p.id)] == [keep.id]
    assert [r.function_id for r in await store.list_routes(p.id)] == [keep.id]
    await store.delete_function(f.id)  # deleting again is harmless
    await _function(store, p, "doomed")  # the name is free again


async def test_saved_payloads_are_named_per_function_and_a_save_replaces(store: Store) -> None:
    p = await _project(store)
    f, g = await _function(store, p, "f"), await _function(store, p, "g")
    await store.put_saved_payload(SavedPayload(new_id(), p.id, f.id, "small", '{"n": 1}'))
    big = SavedPayload(new_id(), p.id, f.id, "big", '{"n": 1000}', updated_at=5.0)
    await store.put_saved_payload(big)
    await store.put_saved_payload(SavedPayload(new_id(), p.id, g.id, "small", '{"g": 1}'))
    listed = await store.list_saved_payloads(f.id)
    assert [(s.name, s.payload) for s in listed] == [("big", '{"n": 1000}'), ("small", '{"n": 1}')]
    assert listed[0] == big
    # Saving a name again replaces its payload and keeps one record, with its first id.
    await store.put_saved_payload(SavedPayload(new_id(), p.id, f.id, "big", "[]", updated_at=9.0))
    again = await store.list_saved_payloads(f.id)
    assert (again[0].name, again[0].payload, again[0].updated_at) == ("big", "[]", 9.0)
    assert again[0].id == big.id and len(again) == 2
    assert [s.payload for s in await store.list_saved_payloads(g.id)] == ['{"g": 1}']

    assert await store.delete_saved_payload(f.id, "small") is True
    assert await store.delete_saved_payload(f.id, "small") is False
    assert [s.name for s in await store.list_saved_payloads(f.id)] == ["big"]
    with pytest.raises(Conflict):
        await store.put_saved_payload(SavedPayload(new_id(), p.id, "no-such-function", "x", "1"))
    await store.delete_function(f.id)
    assert await store.list_saved_payloads(f.id) == []
    assert len(await store.list_saved_payloads(g.id)) == 1


async def test_concurrent_calls(store: Store) -> None:
    p = await _project(store)
    f = await _function(store, p)
    invs = [_invocation(f, created_at=float(i)) for i in range(200)]
    await asyncio.gather(*(store.create_invocation(i) for i in invs))
    for inv in invs:
        inv.status = Status.SUCCEEDED
    await asyncio.gather(*(store.update_invocation(i) for i in invs))
    got = await store.list_invocations(p.id, limit=1000)
    assert len(got) == 200 and all(i.status is Status.SUCCEEDED for i in got)


async def test_closed_store_refuses_work(new_store: NewStore) -> None:
    s = new_store()
    with pytest.raises(RuntimeError):
        await s.get_project("x")
    await s.open()
    await s.close()
    with pytest.raises(RuntimeError):
        await s.get_project("x")
    await s.close()


# --- events, triggers, ticks, connectors -------------------------------------------------


async def test_an_event_and_its_invocations_are_stored_together_once(store: Store) -> None:
    p = await _project(store)
    f = await _function(store, p)
    first = _event(p, "e1", data=b'{"n": 1}', extensions={"traceparent": "00-x"})
    caused = [_invocation(f, event_id="e1"), _invocation(f, event_id="e1")]
    stored = await store.add_event(first, caused)
    assert stored is first and first.seq is not None
    assert [i.event_seq for i in caused] == [first.seq, first.seq]
    for inv in caused:
        assert await store.get_invocation_by_id(inv.id) == inv
    again = [_invocation(f, event_id="e1")]
    assert await store.add_event(_event(p, "e1", data=b"other"), again) is None
    assert await store.get_invocation_by_id(again[0].id) is None  # nothing of it was stored
    assert await store.get_event(p.id, first.seq) == first
    assert await store.get_event("other-project", first.seq) is None
    assert await store.find_event(p.id, "/shop", "e1") == first
    assert await store.find_event(p.id, "/elsewhere", "e1") is None
    assert await store.add_event(_event(await _project(store), "e1")) is not None  # per project


async def test_events_newest_first_and_dispatching(store: Store) -> None:
    p = await _project(store)
    events = [_event(p, f"e{n}", topic="a" if n < 4 else "b") for n in range(6)]
    for event in events:
        await store.add_event(event)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert [e.id for e in await store.list_events(p.id, "a", limit=3)] == ["e3", "e2", "e1"]
    assert [e.id for e in await store.list_events(p.id, "b")] == ["e5", "e4"]
    assert [e.id for e in await store.undispatched_events(limit=2)] == ["e0", "e1"]
    await store.mark_dispatched(events[0].seq)  # type: ignore[arg-type]
    await store.mark_dispatched_many([e.seq for e in events[2:5]])  # type: ignore[misc]
    assert [e.id for e in await store.undispatched_events()] == ["e1", "e5"]
    assert (await store.get_event(p.id, events[0].seq)).dispatched  # type: ignore[arg-type, union-attr]


async def test_event_topics_count_and_order_by_the_latest_event(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    for n, topic in enumerate(["a", "b", "a", "c/d", "a"]):
        await store.add_event(_event(p, f"e{n}", topic=topic, created_at=10.0 + n))
    await store.add_event(_event(q, "other", topic="secret-topic"))
    found = await store.event_topics(p.id)
    assert [(s.topic, s.events, s.last_at) for s in found] == [
        ("a", 3, 14.0),
        ("c/d", 1, 13.0),
        ("b", 1, 11.0),
    ]
    assert [s.topic for s in await store.event_topics(p.id, limit=1)] == ["a"]
    assert [s.topic for s in await store.event_topics(q.id)] == ["secret-topic"]


async def test_triggers(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    f = await _function(store, p)
    hook = Trigger(new_id(), p.id, f.id, TriggerKind.WEBHOOK, token="tok", created_at=1.0)
    msg = Trigger(new_id(), p.id, f.id, TriggerKind.MESSAGE, topic="orders", created_at=2.0)
    timer = Trigger(new_id(), q.id, "g", TriggerKind.TIMER, cron="* * * * *", timezone="UTC")
    for trigger in (timer, msg, hook):
        await store.create_trigger(trigger)
    with pytest.raises(Conflict):
        await store.create_trigger(Trigger(new_id(), q.id, "g", TriggerKind.WEBHOOK, token="tok"))
    assert await store.list_triggers() == [hook, msg, timer]
    assert await store.list_triggers(p.id) == [hook, msg]
    assert await store.list_triggers(function_id="g") == [timer]
    assert await store.list_triggers(kind=TriggerKind.MESSAGE, topic="orders") == [msg]
    assert await store.list_triggers(p.id, topic="nothing") == []
    assert await store.get_trigger(hook.id) == hook
    assert await store.get_trigger_by_token("tok") == hook
    assert await store.get_trigger_by_token("nope") is None
    await store.delete_trigger(hook.id)
    assert await store.get_trigger(hook.id) is None


async def test_a_timer_tick_is_claimed_once(store: Store) -> None:
    assert await store.last_tick("t1") is None
    claims = await asyncio.gather(*(store.claim_tick("t1", 60.0, 61.0) for _ in range(5)))
    assert sorted(claims) == [False] * 4 + [True]
    assert await store.claim_tick("t1", 120.0, 121.0)
    assert await store.claim_tick("t2", 60.0, 61.0)
    assert await store.last_tick("t1") == 120.0


async def test_a_lease_is_held_by_one_holder_until_it_expires_or_is_dropped(store: Store) -> None:
    assert await store.take_lease("connectors", "a", 100.0, 10.0)
    assert not await store.take_lease("connectors", "b", 105.0, 10.0)
    assert await store.take_lease("connectors", "a", 105.0, 10.0)  # renewed: until 115
    assert not await store.take_lease("connectors", "b", 114.9, 10.0)
    assert await store.take_lease("other", "b", 114.9, 10.0)  # leases are per name
    assert await store.take_lease("connectors", "b", 115.0, 10.0)  # expired: b takes it over
    assert not await store.take_lease("connectors", "a", 116.0, 10.0)
    await store.drop_lease("connectors", "a")  # not a's: nothing happens
    assert not await store.take_lease("connectors", "a", 117.0, 10.0)
    await store.drop_lease("connectors", "b")
    assert await store.take_lease("connectors", "a", 117.0, 10.0)  # free again at once
    await store.drop_lease("nothing", "a")


async def test_of_many_racing_holders_one_takes_a_free_or_expired_lease(
    new_store: NewStore,
) -> None:
    """Two stores on one database (two processes; the memory store: one shared), each with many
    concurrent takers, for a lease that is free, then one whose holder stopped renewing."""
    first = new_store()
    await first.open()
    second = first if isinstance(first, MemoryStore) else new_store()
    await second.open()
    try:
        for round_ in range(10):
            name, now = f"lease-{round_}", 1000.0
            for stage in ("free", "expired"):
                takers = [
                    (first if n % 2 else second).take_lease(name, f"h{n}", now, 10.0)
                    for n in range(12)
                ]
                won = await asyncio.gather(*takers)
                assert won.count(True) == 1, f"round {round_}, {stage}: {won}"
                winner = f"h{won.index(True)}"
                assert await first.take_lease(name, winner, now + 1, 10.0)  # it holds it
                assert not await second.take_lease(name, "late", now + 1, 10.0)
                now += 11.0 + 10.0  # past the winner's renewal: expired for the next stage
    finally:
        await first.close()
        if second is not first:
            await second.close()


async def test_child_invocations_oldest_first(store: Store) -> None:
    f = await _function(store, await _project(store))
    parent = _invocation(f)
    children = [_invocation(f, parent_id=parent.id, created_at=float(n)) for n in (2, 1, 3)]
    for inv in (parent, *children, _invocation(f)):
        await store.create_invocation(inv)
    got = await store.child_invocations(parent.id)
    assert [i.created_at for i in got] == [1.0, 2.0, 3.0]
    assert await store.child_invocations("nobody") == []


async def test_connectors(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    nats = ConnectorRecord(
        new_id(), p.id, "feed", "nats", "nats://u:pw@h", "in", {"subject": "x"}, created_at=1.0
    )
    redis = ConnectorRecord(new_id(), q.id, "feed", "redis", "redis://h", "in", created_at=2.0)
    await store.create_connector(redis)
    await store.create_connector(nats)
    with pytest.raises(Conflict):
        await store.create_connector(ConnectorRecord(new_id(), p.id, "feed", "mqtt", "u", "t"))
    assert await store.list_connectors() == [nats, redis]
    assert await store.list_connectors(q.id) == [redis]
    await store.delete_connector(nats.id)
    assert await store.list_connectors(p.id) == []


# --- secrets, gateway ---------------------------------------------------------------------


async def test_secrets(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    await store.put_secret(p.id, "zeta", b"\x00cipher-z", 1.0)
    await store.put_secret(p.id, "alpha", b"cipher-a", 2.0)
    await store.put_secret(q.id, "beta", b"cipher-b", 3.0)
    with pytest.raises(Conflict):
        await store.put_secret(p.id, "alpha", b"again", 4.0)
    assert await store.get_secret(p.id, "zeta") == b"\x00cipher-z"
    assert await store.get_secret(q.id, "zeta") is None
    assert await store.list_secrets(p.id) == [(p.id, "alpha", 2.0), (p.id, "zeta", 1.0)]
    assert [name for _, name, _ in await store.list_secrets()] == ["alpha", "beta", "zeta"]
    await store.replace_secret_ciphertext(p.id, "alpha", b"rotated")
    assert await store.get_secret(p.id, "alpha") == b"rotated"
    assert (p.id, "alpha", 2.0) in await store.list_secrets(p.id)  # created_at kept
    await store.delete_secret(p.id, "alpha")
    assert await store.get_secret(p.id, "alpha") is None


async def test_routes(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    f = Function(id=new_id(), project_id=p.id, name="f")
    g = Function(id=new_id(), project_id=p.id, name="g")
    items = Route(new_id(), p.id, f.id, "GET", "/items", cors_origins=["https://a.example"])
    post = Route(new_id(), p.id, g.id, "POST", "/items", auth="invoker", rate_limit=5)
    about = Route(new_id(), p.id, g.id, "GET", "/about", timeout_s=1.5, max_body_bytes=10)
    await store.create_function(f, _version(f), routes=[items])
    await store.create_function(g, _version(g), routes=[post, about])
    clash = Function(id=new_id(), project_id=p.id, name="h")
    with pytest.raises(Conflict, match="the project already routes GET /items"):
        await store.create_function(clash, _version(clash), routes=[_route(clash, "GET", "/items")])
    await _function(store, q, "g", ("GET", "/items"))  # another project's
    assert await store.list_routes(p.id) == [about, items, post]
    assert await store.list_routes(p.id, g.id) == [about, post]
    await store.delete_function(g.id)
    assert await store.list_routes(p.id) == [items]


async def test_rate_counters_count_per_key_and_window(store: Store) -> None:
    assert [await store.hit("k", 100) for _ in range(3)] == [1, 2, 3]
    assert await store.hit("other", 100) == 1
    counts = await asyncio.gather(*(store.hit("k", 101) for _ in range(10)))
    assert sorted(counts) == list(range(1, 11))
    assert await store.hit("other", 100) == 2


# --- jobs, images ---------------------------------------------------------------------------


async def test_jobs_round_trip_and_conditional_updates(store: Store) -> None:
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


async def test_a_job_update_writes_only_its_outcome(store: Store) -> None:
    project = await _project(store)
    job = Job(new_id(), project.id, JobKind.CALLABLE, "python3.11", stdin=b"pickle")
    await store.create_job(job)
    job.stdin, job.memory_mb, job.stdout = b"changed", 1, "progress"
    assert await store.update_job(job)
    loaded = await store.get_job(job.id)
    assert loaded is not None and (loaded.stdin, loaded.memory_mb) == (b"pickle", 256)
    assert loaded.stdout == "progress"
    newer = Job(new_id(), project.id, JobKind.COMMAND, "sh", created_at=job.created_at + 1)
    await store.create_job(newer)
    assert [j.id for j in await store.list_jobs(project.id)] == [newer.id, job.id]
    assert [j.id for j in await store.list_jobs(project.id, limit=1)] == [newer.id]
    assert sorted(j.id for j in await store.unfinished_jobs()) == sorted([job.id, newer.id])
    assert not await store.update_job(Job("missing", project.id, JobKind.COMMAND, "sh"))


async def test_images(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    web = Image(new_id(), p.id, "localhost/web:1", "e" * 64, 100, created_at=1.0)
    api = Image(new_id(), p.id, "localhost/api:1", "a" * 64, 50)
    for image in (web, api):
        await store.put_image(image)
    moved = Image(new_id(), p.id, "localhost/web:1", "f" * 64, 200, created_at=2.0)
    await store.put_image(moved)  # the project's ref now names other content
    assert moved.id == web.id
    assert await store.get_image(p.id, "localhost/web:1") == moved
    assert await store.get_image(q.id, "localhost/web:1") is None
    assert [i.ref for i in await store.list_images(p.id)] == ["localhost/api:1", "localhost/web:1"]

    assert await store.image_in_use("f" * 64, "nothing")
    assert not await store.image_in_use("e" * 64, "nothing")  # no record names it any more
    f = await _function(store, p)
    await store.add_version(_version(f, version=2, digest="d" * 64))
    assert await store.image_in_use("nothing", "d" * 64)
    await store.delete_image(api.id)
    assert not await store.image_in_use("a" * 64, "nothing")
    assert [i.ref for i in await store.list_images(p.id)] == ["localhost/web:1"]


async def test_image_archives(store: Store) -> None:
    """A cluster's records name the archive each image came in; a version finds it by the
    engine id (or the prefix of it a version's digest holds), whichever project loaded it."""
    p, q = await _project(store), await _project(store)
    old = Image(new_id(), p.id, "localhost/old:1", "b" * 64, 10)  # loaded before archives
    await store.put_image(old)
    assert await store.image_archive("b" * 60) is None
    assert (await store.get_image(p.id, "localhost/old:1")) == old
    again = Image(new_id(), p.id, "localhost/old:1", "b" * 64, 10, archive="1" * 64)
    await store.put_image(again)  # loaded again: the record now names the archive
    found = await store.get_image(p.id, "localhost/old:1")
    assert found is not None and (found.id, found.archive) == (old.id, "1" * 64)
    assert await store.image_archive("b" * 64) == "1" * 64
    assert await store.image_archive("b" * 60) == "1" * 64
    assert await store.image_archive("c" * 60) is None
    other = Image(new_id(), q.id, "localhost/web:2", "c" * 64, 5, created_at=1.0, archive="2" * 64)
    await store.put_image(other)
    assert await store.image_archive("c" * 60) == "2" * 64  # another project's version finds it
    newer = Image(new_id(), p.id, "localhost/web:9", "c" * 64, 5, created_at=2.0, archive="3" * 64)
    await store.put_image(newer)
    assert await store.image_archive("c" * 60) == "3" * 64
    await store.delete_image(newer.id)
    await store.delete_image(other.id)
    assert await store.image_archive("c" * 60) is None
