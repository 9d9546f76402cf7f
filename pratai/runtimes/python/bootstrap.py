"""Pratai's Python runtime: runs INSIDE the sandbox (stdlib only, never imports pratai).

    python -I [-S] /runtime/bootstrap.py '<json config>'

(-S when the function has no virtualenv: no system site-packages, and a faster start.)

Config keys: in_fd, out_fd (control pipes), handler ("module.func"), name, memory_mb,
max_output, max_result, rlimit_memory (bool: no cgroup, bound the address space),
rlimit_pids (int or null), fsize (bytes). A spare sandbox (see pratai/drivers/spares.py) starts
with only in_fd, out_fd and "spare": true, says so, and gets the rest, and the function's
environment variables, when a function claims it; it then loads the handler as any instance.

Frames in both directions: struct "!II" (header length, body length), a JSON header, a body.

    driver -> runtime   {"op": "call", "content_type": str, "timeout": float}   body: payload
    driver -> runtime   {"op": "claim", "config": {...}, "env": {...}}   (spares: once, first)
    runtime -> driver   {"op": "spare"}   (spares: before the claim)
    runtime -> driver   {"op": "ready"} | {"op": "init_error", "error": {...}, "stdout", "stderr"}
                        {"op": "result", "status", "error", "duration_ms", "maxrss_kb",
                         "lens": [result, stdout, stderr]}   body: result + stdout + stderr
"""

import io
import json
import os
import resource
import signal
import struct
import sys
import time

HEAD = struct.Struct("!II")
OUT_PATH, ERR_PATH = "/tmp/.pratai-stdout", "/tmp/.pratai-stderr"
MAIN_PID = os.getpid()


class Context:
    """The AWS-style second argument."""

    def __init__(self, name, memory_mb, timeout):
        self.function_name = name
        self.memory_limit_in_mb = memory_mb
        self.invocation_id = self.aws_request_id = os.urandom(16).hex()
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(fd):
    hlen, blen = HEAD.unpack(read_exact(fd, HEAD.size))
    header = json.loads(read_exact(fd, hlen))
    return header, read_exact(fd, blen) if blen else b""


def send(fd, header, body=b""):
    head = json.dumps(header).encode()
    data = memoryview(HEAD.pack(len(head), len(body)) + head + body)
    while data:
        data = data[os.write(fd, data) :]


def error_of(exc, memory_mb):
    import traceback  # only on errors: slow to import, and cold starts count

    if isinstance(exc, MemoryError):
        return {
            "type": "MemoryLimitExceeded",
            "message": f"the function exceeded the memory limit of {memory_mb} MB",
            "traceback": "".join(traceback.format_exception(exc)),
        }
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # hide the runtime's own frames
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


class Capture:
    """Per-call stdout/stderr at the descriptor level, so C code and child processes count."""

    def __init__(self, limit):
        self.limit = limit
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.files = [os.open(OUT_PATH, flags, 0o600), os.open(ERR_PATH, flags, 0o600)]
        self.null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def start(self):
        for target, fd in zip((1, 2), self.files, strict=True):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.dup2(fd, target)

    def stop(self):
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 - contextlib costs a cold start ~2 ms
                stream.flush()
            except Exception:
                pass
        os.dup2(self.null, 1)
        os.dup2(self.null, 2)
        out = []
        for fd in self.files:
            data = os.pread(fd, self.limit + 1, 0)
            if len(data) > self.limit:
                data = data[: self.limit] + f"\n[output truncated at {self.limit} bytes]\n".encode()
            out.append(data)
        return out


def set_limits(cfg):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails instead of killing
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["fsize"], cfg["fsize"]))
    if cfg.get("rlimit_memory"):
        limit = cfg["memory_mb"] * 1024 * 1024
        for res in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            resource.setrlimit(res, (limit, limit))
    if cfg.get("rlimit_pids"):
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["rlimit_pids"], cfg["rlimit_pids"]))


def load(spec):
    module_name, _, func_name = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {spec!r} must look like 'module.function'")
    sys.path.insert(0, "/code")
    module = __import__(module_name, fromlist=[func_name])
    func = getattr(module, func_name, None)
    if func is None:
        raise AttributeError(f"module {module_name!r} has no function {func_name!r}")
    if not callable(func):
        raise TypeError(f"{spec!r} is not callable")
    return func, positional_count(func) >= 2


def positional_count(func):
    # The code object answers for plain functions; `inspect` (slow to import) for the rest.
    code = getattr(func, "__code__", None)
    if code is not None and not hasattr(func, "__wrapped__"):
        return code.co_argcount
    import inspect

    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])


def decode(body, content_type):
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return json.loads(body) if body.strip() else None
    return body


def invoke(cfg, func, aws, header, body):
    """Returns (status, error, result bytes)."""
    try:
        payload = decode(body, header.get("content_type", ""))
    except ValueError as exc:
        return (
            "failed",
            {"type": "InvalidPayload", "message": f"payload is not JSON: {exc}", "traceback": ""},
            b"",
        )
    try:
        if aws:
            value = func(payload, Context(cfg["name"], cfg["memory_mb"], header["timeout"]))
        else:
            value = func(payload)
    except BaseException as exc:  # user code may raise anything
        if os.getpid() != MAIN_PID:
            os._exit(1)
        return "failed", error_of(exc, cfg["memory_mb"]), b""
    if os.getpid() != MAIN_PID:  # a forked child ran off the end of the handler
        os._exit(0)
    try:
        result = json.dumps(value).encode()
    except (TypeError, ValueError) as exc:
        return (
            "failed",
            {
                "type": "TypeError",
                "traceback": "",
                "message": f"the return value is not JSON-serialisable: {exc}",
            },
            b"",
        )
    except MemoryError as exc:
        return "failed", error_of(exc, cfg["memory_mb"]), b""
    if len(result) > cfg["max_result"]:
        return (
            "failed",
            {
                "type": "ResultTooLarge",
                "message": f"the return value is {len(result)} bytes encoded as JSON, over the "
                f"limit of {cfg['max_result']} bytes",
                "traceback": "",
            },
            b"",
        )
    return "succeeded", None, result


def main():
    cfg = json.loads(sys.argv[1])
    in_fd, out_fd = cfg["in_fd"], cfg["out_fd"]
    for fd in (in_fd, out_fd):
        os.set_inheritable(fd, False)

    def after_fork():  # children never speak the protocol
        for fd in (in_fd, out_fd):
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass

    os.register_at_fork(after_in_child=after_fork)
    if not cfg.get("spare"):
        set_limits(cfg)
    sys.dont_write_bytecode = True  # -I ignores PYTHON* variables
    sys.stdout = io.TextIOWrapper(  # unbuffered, so output interleaves with child processes
        io.FileIO(1, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    if cfg.get("spare"):  # what is the same for every function is made; now the rest
        send(out_fd, {"op": "spare"})
        try:
            claim, _ = recv(in_fd)
        except EOFError:  # stopped before any function claimed it
            return 0
        cfg.update(claim["config"])
        os.environ.update(claim["env"])
        set_limits(cfg)
    capture = Capture(cfg["max_output"])
    capture.start()
    try:
        func, aws = load(cfg["handler"])
    except BaseException as exc:
        out, err = capture.stop()
        send(
            out_fd,
            {
                "op": "init_error",
                "error": error_of(exc, cfg["memory_mb"]),
                "stdout": out.decode(errors="replace"),
                "stderr": err.decode(errors="replace"),
            },
        )
        return 1
    capture.stop()
    send(out_fd, {"op": "ready"})
    while True:
        try:
            header, body = recv(in_fd)
        except EOFError:
            return 0
        if header.get("op") != "call":
            continue
        capture.start()
        started = time.perf_counter()
        status, error, result = invoke(cfg, func, aws, header, body)
        duration = (time.perf_counter() - started) * 1000
        out, err = capture.stop()
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        send(
            out_fd,
            {
                "op": "result",
                "status": status,
                "error": error,
                "duration_ms": duration,
                "maxrss_kb": usage,
                "lens": [len(result), len(out), len(err)],
            },
            result + out + err,
        )


if __name__ == "__main__":
    sys.exit(main())
