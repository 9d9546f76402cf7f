"""`import pratai` stays cheap: the CLI imports it, and never needs the SDK."""

from __future__ import annotations

import subprocess
import sys


def test_import_pratai_loads_no_sdk() -> None:
    probe = (
        "import sys, pratai; "
        "print(sorted(m for m in sys.modules if m.startswith(('pratai.', 'cloudpickle', 'httpx'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_sdk_names_load_on_first_use() -> None:
    import pratai
    from pratai.sdk.client import Client

    assert pratai.Client is Client
    assert {"Client", "AsyncClient", "Job", "RemoteError"} <= set(pratai.__all__)
    assert "Client" in dir(pratai)
