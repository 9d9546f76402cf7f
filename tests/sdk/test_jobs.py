"""Python callables run as jobs: what goes out, what comes back, against a real server."""

from __future__ import annotations

import traceback

import httpx
import pytest

import pratai
from tests.helpers import Server


def make_adder(n: int):
    def add(x: int) -> int:
        return x + n

    return add


def test_submit_a_closure(client: pratai.Client) -> None:
    job = client.submit(make_adder(5), 3)
    assert job.id and job.kind == "callable"
    assert job.status in {"queued", "running", "succeeded"}
    assert job.result(timeout=60) == 8
    assert job.status == "succeeded"
    assert client.get_job(job.id).result() == 8  # a second handle on the same job
    assert job.cancel() is False  # finished: the server answers 409


def test_submit_the_issue_example(client: pratai.Client) -> None:
    def add(a, b):
        return a + b

    assert client.submit(add, 3, 4).result() == 7


def test_a_lambda_capturing_local_state(client: pratai.Client) -> None:
    state = {"factors": [2, 3, 5], "offset": 100}
    job = client.submit(lambda i, scale=1: state["factors"][i] * scale + state["offset"], 2, 10)
    assert job.result() == 150


def test_keywords_reach_the_function_even_with_option_like_names(client: pratai.Client) -> None:
    def echo(*args, **kwargs):
        return args, kwargs

    job = client.submit(echo, 1, timeout=5, memory=3, requirements=["x"])
    assert job.result() == ((1,), {"timeout": 5, "memory": 3, "requirements": ["x"]})
    job = client.submit_with(echo, args=(2,), kwargs={"timeout": 1}, timeout_s=30, memory_mb=128)
    assert job.result() == ((2,), {"timeout": 1})


class Counter:
    def __init__(self, base: int) -> None:
        self.base = base

    def bump(self, by: int) -> int:
        return self.base + by


def test_a_bound_method_of_an_instance(client: pratai.Client) -> None:
    assert client.submit(Counter(10).bump, 5).result() == 15


def test_a_locally_defined_class_as_the_result(client: pratai.Client) -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

    def make(x: int) -> Point:
        return Point(x, -2 * x)

    point = client.submit(make, 4).result()
    assert type(point).__name__ == "Point"
    assert (point.x, point.y, point.norm1()) == (4, -8, 12)


def explode(n: int) -> None:
    detail = f"bad input {n}"
    raise ValueError(detail)


def test_an_exception_comes_back_with_its_remote_traceback(client: pratai.Client) -> None:
    job = client.submit(explode, 42)
    with pytest.raises(ValueError, match="bad input 42") as caught:
        job.result()
    text = "".join(traceback.format_exception(caught.value))
    assert "Remote traceback" in text
    assert "in explode" in text and "raise ValueError(detail)" in text
    assert job.status == "failed"
    assert job.view["error"]["type"] == "ValueError"
    with pytest.raises(ValueError, match="bad input 42"):
        job.result()  # again, from the handle's memory


def test_an_exception_class_defined_locally(client: pratai.Client) -> None:
    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused("no way")

    with pytest.raises(Exception, match="no way") as caught:
        client.submit(refuse).result()
    assert type(caught.value).__name__ == "Refused"


def test_output_is_kept(client: pratai.Client) -> None:
    def chatty() -> int:
        import sys

        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 1

    job = client.submit(chatty)
    assert job.result() == 1
    job.refresh()
    assert "to stdout" in job.stdout and "to stderr" in job.stderr


def test_result_timeout_raises_timeout_error(client: pratai.Client) -> None:
    def slow() -> str:
        import time

        time.sleep(30)
        return "late"

    job = client.submit(slow)
    with pytest.raises(TimeoutError):
        job.result(timeout=0.2)
    assert job.cancel()
    assert job.status == "cancelled"
    with pytest.raises(Exception) as caught:
        job.result()
    assert type(caught.value).__name__ == "CancelledError"


def test_a_runtime_mismatch_is_refused_before_any_job_exists(
    client: pratai.Client, server: Server
) -> None:
    before = {j.id for j in client.list_jobs(limit=1000)}
    other = pratai.Client(server.url, server.api_key, python="3.2")
    with pytest.raises(pratai.RuntimeMismatch) as caught:
        other.submit(make_adder(1), 1)
    assert caught.value.status == 400
    assert "3.2" in str(caught.value)
    assert isinstance(caught.value, pratai.ApiError)
    assert {j.id for j in client.list_jobs(limit=1000)} == before

    with server.http() as http:  # the same refusal to a raw request
        refused = http.post(
            "/v1/jobs/callable",
            params={"python": "2.7"},
            content=b"not even a pickle",
            headers={"Content-Type": "application/vnd.pratai.pickle"},
        )
    assert refused.status_code == 400 and refused.json()["error"] == "runtime_mismatch"
    assert {j.id for j in client.list_jobs(limit=1000)} == before


def use_tabulate() -> str:
    import tabulate

    return str(tabulate.tabulate([[1, 2]], tablefmt="plain"))


def test_a_missing_module_names_itself_then_requirements_provide_it(
    client: pratai.Client,
) -> None:
    with pytest.raises(ModuleNotFoundError) as caught:
        client.submit(use_tabulate).result()
    assert caught.value.name == "tabulate"
    assert "requirements=['tabulate']" in str(caught.value)

    assert client.submit(use_tabulate, _requirements=["tabulate"]).result() == "1  2"
    assert client.submit_with(use_tabulate, requirements=["tabulate"]).result() == "1  2"


def test_list_jobs(client: pratai.Client) -> None:
    job = client.submit(make_adder(0), 1)
    job.wait()
    listed = {j.id: j for j in client.list_jobs(status="succeeded", limit=1000)}
    assert job.id in listed and listed[job.id].status == "succeeded"


def test_a_bad_key_is_refused(server: Server) -> None:
    with pytest.raises(pratai.ApiError) as caught:
        pratai.Client(server.url, "pk_nobody.nothing").submit(make_adder(1), 1)
    assert caught.value.status == 401
    assert httpx.get(server.url + "/healthz").status_code == 200
