"""Runs a submitted callable INSIDE the sandbox (stdlib + cloudpickle; never imports pratai).

The Python runtime's bootstrap loads `pratai_job.main` as the handler and passes the request
body (bytes) unchanged. The body is cloudpickle of {"fn", "args", "kwargs"} for one call, or
{"fn", "map": [args, ...]} for a chunk of a map. The answer is JSON:

    {"ok": true, "value": base64(cloudpickle(return value, or the chunk's list of
                                 ("ok", value) | ("error", error, exception or None)))}
    {"ok": false, "error": {"type", "message", "traceback", "module"?},
                  "exception": base64(cloudpickle(exception)) or null}
"""

import base64
import traceback

import cloudpickle

_HERE = __file__


def _encode(value):
    return base64.b64encode(cloudpickle.dumps(value)).decode()


def _error(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _HERE:
        tb = tb.tb_next  # the user's frames only
    error = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        error["module"] = exc.name
        error["message"] = (
            f"the job needs the module {exc.name!r}, which is not installed where it runs: "
            f"submit it with requirements=[{top!r}] (in the SDK: "
            f"client.submit(..., _requirements=[{top!r}]))"
        )
    return error


def _failure(exc):
    try:
        exception = _encode(exc)
    except Exception:  # an exception that does not pickle still reports its text
        exception = None
    return {"ok": False, "error": _error(exc), "exception": exception}


def _run_chunk(fn, items):
    out = []
    for args in items:
        try:
            out.append(("ok", fn(*args)))
        except Exception as exc:
            out.append(("error", _error(exc), exc))
    try:
        return _encode(out)
    except Exception:  # an exception that does not pickle: send its text only
        return _encode([entry if entry[0] == "ok" else (*entry[:2], None) for entry in out])


def main(payload):
    try:
        task = cloudpickle.loads(payload)
    except Exception as exc:
        return _failure(exc)
    fn = task["fn"]
    if "map" in task:
        try:
            return {"ok": True, "value": _run_chunk(fn, task["map"])}
        except Exception as exc:
            return _failure(exc)
    try:
        value = fn(*task.get("args", ()), **task.get("kwargs", {}))
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        return _failure(exc)
    try:
        return {"ok": True, "value": _encode(value)}
    except Exception as exc:
        return _failure(exc)
