"""How a remote error dict becomes a local exception (no server needed: it is pure data)."""

from __future__ import annotations

import base64
import traceback
from pathlib import Path

import cloudpickle

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
