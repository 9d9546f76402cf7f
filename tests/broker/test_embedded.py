"""What only EmbeddedBroker does: its messages and leases outlive the process (kill -9), and a
reopened file delivers them again. Delivery itself is in test_delivery.py, for every broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pratai.broker import open_broker
from pratai.broker.embedded import EmbeddedBroker
from tests.broker.support import next_delivery

REPO = Path(__file__).resolve().parents[2]


async def test_durable_across_kill(tmp_path: Path) -> None:
    path = str(tmp_path / "broker.sqlite3")
    code = (
        "import asyncio, os, signal, sys\n"
        "from pratai.broker.embedded import EmbeddedBroker\n"
        "async def main():\n"
        "    b = EmbeddedBroker(sys.argv[1]); await b.open()\n"
        "    await b.publish('q', b'survives', message_id='m1')\n"
        "    await b.publish('q', b'leased', message_id='m2')\n"
        "    gen = b.consume('q', lease_s=3600)\n"
        "    d = await anext(gen)\n"  # m1 is leased by this process when it dies
        "    print(d.id, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, path], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["m1"]

    b = open_broker("embedded", path)
    await b.open()  # open() releases the dead process's leases
    try:
        got = [await next_delivery(b, "q"), await next_delivery(b, "q")]
        assert sorted((d.id, d.body, d.attempts) for d in got) == [
            ("m1", b"survives", 2),
            ("m2", b"leased", 1),
        ]
    finally:
        await b.close()


async def test_open_twice_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "broker.sqlite3")
    b = EmbeddedBroker(path)
    await b.open()
    await b.open()
    await b.publish("q", b"kept")
    await b.close()
    await b.close()
    b2 = EmbeddedBroker(path, release_on_open=False)
    await b2.open()
    try:
        d = await next_delivery(b2, "q", lease_s=3600)
        await b2.release_all()
        again = await next_delivery(b2, "q")
        assert (again.id, again.attempts) == (d.id, 2)
    finally:
        await b2.close()
