"""Code written against multyvac runs unchanged on Pratai."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pratai.compat import multyvac
from tests.helpers import Server


def add(a, b):
    return a + b


@pytest.fixture
def configured(server: Server) -> Iterator[None]:
    key_id, secret = server.api_key.split(".", 1)
    multyvac.config.set_key(api_key=key_id, api_secret_key=secret, api_url=server.url)
    yield
    multyvac.config.set_key()


def test_submit_and_get_result(configured: None) -> None:
    jid = multyvac.submit(add, 3, 4)
    job = multyvac.get(jid)
    assert job.get_result() == 7
    assert job.status == "done"
    assert job.wait() == "done"
    assert job.result == 7


def test_the_whole_key_as_api_key(server: Server) -> None:
    multyvac.config.set_key(api_key=server.api_key, api_secret_key=None, api_url=server.url)
    try:
        assert multyvac.get(multyvac.submit(add, "a", "b")).get_result() == "ab"
    finally:
        multyvac.config.set_key()


def test_map_and_errors(configured: None) -> None:
    jids = multyvac.map(lambda x: 10 // x, [1, 2, 0])
    jobs = multyvac.get(jids)
    assert [j.get_result() for j in jobs[:2]] == [10, 5]
    with pytest.raises(ZeroDivisionError):
        jobs[2].get_result()
    assert jobs[2].status == "error"


def test_reserved_options_and_kill(configured: None) -> None:
    def slow():
        import time

        time.sleep(30)

    job = multyvac.get(multyvac.submit(slow, _timeout_s=60, _layer="ignored"))
    assert job.status in {"queued", "processing"}
    job.kill()
    assert job.wait() == "killed"
