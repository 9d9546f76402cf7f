"""How a remote error dict becomes a local exception (no server needed: it is pure data)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path

import cloudpickle
import pytest
from packaging.version import Version

from pratai.sdk.errors import RemoteError
from pratai.sdk.pickling import remote_exception

TB = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'k'\n"


def test_a_pickled_exception_is_raised_as_itself_with_its_remote_traceback() -> None:
    pickled = base64.b64encode(cloudpickle.dumps(KeyError("k"))).decode()
    exc = remote_exception(
        {"type": "KeyError", "message": "'k'", "traceback": TB, "exception": pickled}
    )
    assert isinstance(exc, KeyError) and exc.args == ("k",)
    assert 'File "x.py", line 1, in f' in "".join(traceback.format_exception(exc))


def test_without_a_loadable_exception_it_is_a_remote_error() -> None:
    exc = remote_exception(
        {"type": "Weird", "message": "m", "traceback": TB, "exception": "bm90IGEgcGlja2xl"}
    )
    assert isinstance(exc, RemoteError)
    assert (exc.type, exc.message, exc.traceback) == ("Weird", "m", TB)
    assert str(exc) == "Weird: m"


def test_a_missing_module_says_how_to_ask_for_it() -> None:
    exc = remote_exception(
        {"type": "ModuleNotFoundError", "message": "No module named 'yaml'", "module": "yaml"}
    )
    assert isinstance(exc, ModuleNotFoundError) and exc.name == "yaml"
    assert "requirements=['yaml']" in str(exc)
    dotted = remote_exception(
        {"type": "ModuleNotFoundError", "message": "No module named 'google.protobuf'"}
    )
    assert isinstance(dotted, ModuleNotFoundError) and dotted.name == "google.protobuf"
    assert "requirements=['google']" in str(dotted)


def test_frames_without_source_get_it_from_local_files() -> None:
    here = __file__
    remote = (
        "Traceback (most recent call last):\n"
        f'  File "{here}", line 1, in <module>\n'
        '  File "/nowhere/x.py", line 3, in g\n'
        "ValueError: v\n"
    )
    exc = remote_exception({"type": "ValueError", "message": "v", "traceback": remote})
    shown = str(exc.__cause__)
    first_line = Path(here).read_text().splitlines()[0].strip()
    assert f'line 1, in <module>\n    {first_line}\n  File "/nowhere/x.py"' in shown
    assert isinstance(exc, RemoteError) and exc.traceback == remote


USER_CODE = 'def boom(n):\n    detail = f"bad input {n}"\n    raise ValueError(detail)\n'
SHIP = (
    "import sys, pathlib, cloudpickle\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import userlib\n"
    "from pratai.sdk.pickling import dumps_call\n"
    "pathlib.Path(sys.argv[2]).write_bytes(dumps_call(userlib.boom, (42,), {}))\n"
    "print(cloudpickle.__version__)\n"
)
# Loads and calls the payload as the job runtime does: plain pickle, the user's module absent.
RUN = (
    "import pickle, sys, traceback\n"
    "call = pickle.loads(open(sys.argv[1], 'rb').read())\n"
    "try:\n    call['fn'](*call['args'])\n"
    "except ValueError:\n    traceback.print_exc(file=sys.stdout)\n"
)


def _lowest_allowed_cloudpickle() -> str:
    dependencies = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in dependencies if d.startswith("cloudpickle")]
    found = re.search(r">=\s*([\w.]+)", spec)
    assert found, f"cloudpickle's range has no lower bound: {spec}"
    return found.group(1)


@pytest.mark.parametrize("version", ["installed", "lowest allowed"])
def test_shipped_code_keeps_its_file_and_line(tmp_path: Path, version: str) -> None:
    """A remote traceback names the caller's file and line whatever cloudpickle the user has."""
    path = [str(Path.cwd())]
    if version == "lowest allowed":
        wanted = _lowest_allowed_cloudpickle()
        target = tmp_path / "site"
        uv = Path(sys.executable).parent / "uv"
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", sys.executable, "--target", str(target),
             f"cloudpickle=={wanted}"],
            check=True,
        )  # fmt: skip
        path.insert(0, str(target))
    user = tmp_path / "user"
    user.mkdir()
    (user / "userlib.py").write_text(USER_CODE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    payload = tmp_path / "call.pickle"
    shipped = subprocess.run(
        [sys.executable, "-c", SHIP, str(user), str(payload)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    if version == "lowest allowed":
        assert Version(shipped.stdout.strip()) == Version(wanted)
    ran = subprocess.run(
        [sys.executable, "-c", RUN, str(payload)],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f'File "{user / "userlib.py"}", line 3, in boom' in ran.stdout, ran.stdout
    assert "raise ValueError(detail)" in ran.stdout
