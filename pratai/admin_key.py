"""`pratai admin-key`: the operator's way back in when no admin key is left, or none is known.

It reads the same settings as `pratai serve` (PRATAI_HOME, PRATAI_DATABASE_URL) and writes a new
admin key of the `default` project straight into the store, never through the API: whoever can
read and write the platform's data can administer it anyway, and nobody else can run it. It works
while the server runs (the server finds the new key in the store on first use).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pratai.core.models import Role
from pratai.core.tenants import Tenants
from pratai.errors import NotFound, Unavailable
from pratai.settings import Settings
from pratai.store.sql import SqlStore, create_engine, normalize_url


def _check_store_exists(url: str) -> None:
    """Refuse to create a platform: an empty place means PRATAI_HOME or the URL is wrong."""
    parsed = make_url(normalize_url(url))
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise NotFound(
            f"no Pratai store at {parsed.database}: set PRATAI_HOME (or PRATAI_DATABASE_URL) as"
            " for `pratai serve`; the server creates the store on its first start"
        )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            has_keys = sa.inspect(conn).has_table("api_keys")
    except sa.exc.OperationalError as exc:
        raise Unavailable(
            f"cannot open the store at {shown}: {exc.orig}; run this as the user who runs"
            " `pratai serve`, with the same PRATAI_HOME or PRATAI_DATABASE_URL"
        ) from None
    finally:
        engine.dispose()
    if not has_keys:
        raise NotFound(f"no Pratai store in {shown}: `pratai serve` creates it on its first start")


async def mint_admin_key(settings: Settings, name: str) -> str:
    """A new admin key of the default project; returns its token (only its hash is stored)."""
    _check_store_exists(settings.store_url)
    store = SqlStore(settings.store_url)
    await store.open()  # brings an older store up to this version's schema, as serve would
    try:
        tenants = Tenants(store)
        project = await tenants.ensure_project()
        return await tenants.create_key(project, Role.ADMIN, name=name)
    finally:
        await store.close()
