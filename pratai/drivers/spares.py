"""Spare sandboxes: started before a function needs one, so that a cold start is only the
function's own import.

A spare is an ordinary sandbox of one *shape* (runtime, environment folder, network), with the
same namespaces, unprivileged uid, cgroup and private /tmp as any instance. Its runtime starts,
says so, and waits, having loaded nothing of anyone's. A cold start of a function of that shape
claims one: the driver puts the function's code into the (empty) folder the spare mounts at
/code and its secret files into the one at /run/secrets, writes the function's limits into the
spare's cgroup and sends the rest (handler, limits, environment variables); the runtime then
loads the handler. A spare serves one function and stops with that instance: it is never handed
back, so nothing of one function reaches another. (OpenWhisk's prewarmed "stem cell"
containers are the same idea.)

After each cold start the driver starts a spare of that shape in the background, for the next
one: `per_shape` wait per shape (one more while cold starts of it come faster than spares), for
the `max_shapes` shapes used last. Each idle spare holds a few MB of memory outside the node's
budget, which is why their number is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pratai.drivers.base import InstanceSpec
from pratai.drivers.cgroups import Cgroup
from pratai.drivers.instance import ProcessInstance

log = logging.getLogger(__name__)

# A package with more files than this is not linked into a spare: the normal start, which
# mounts the package itself, is as fast then.
MAX_LINKED_FILES = 1000
# A shape whose cold start found no spare waiting this recently gets one more (fresh-per-call
# functions, bursts): two sandboxes start at once where there are two cores.
BUSY_S = 2.0


@dataclass(frozen=True)
class Shape:
    """What a sandbox has before it knows its function: the runtime, the environment folder
    mounted (and the interpreter that comes with it), whether it shares the network, and
    for Node.js the memory its heap cap follows."""

    runtime: str
    env_dir: Path | None
    network: bool
    heap_mb: int = 0  # a runtime whose heap cap is a flag of its command line has it set

    @classmethod
    def of(cls, spec: InstanceSpec, heap_flag: bool = False) -> Shape:
        env_dir = spec.env_dir.resolve() if spec.env_dir is not None else None
        return cls(spec.runtime, env_dir, spec.network, spec.memory_mb if heap_flag else 0)


@dataclass
class Spare:
    instance: ProcessInstance  # started; its runtime waits for a claim
    code_dir: Path  # the host folder mounted at /code, empty until claimed
    secrets_dir: Path  # the host folder mounted at /run/secrets
    cgroup: Cgroup | None


class Spares:
    def __init__(
        self, start: Callable[[Shape], Awaitable[Spare]], per_shape: int, max_shapes: int = 4
    ) -> None:
        self._start = start
        self.per_shape = per_shape
        self.max_shapes = max_shapes
        self._ready: OrderedDict[Shape, list[Spare]] = OrderedDict()  # used last at the end
        self._starting: dict[Shape, int] = {}
        self._missed: dict[Shape, float] = {}  # when a cold start last found none waiting
        # spares being started that no cold start waits for yet (each goes to one at most)
        self._unpromised: dict[Shape, list[asyncio.Future[Spare | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = self.claimed = self.failed = 0

    def waiting(self, shape: Shape) -> list[Spare]:
        return list(self._ready.get(shape, []))

    def take(self, shape: Shape) -> Spare | None:
        """A waiting spare of `shape`, or None."""
        waiting = self._ready.get(shape, [])
        while waiting:
            spare = waiting.pop(0)  # the oldest
            if spare.instance.alive:
                self.claimed += 1
                return spare
            self._stop(spare)
        return None

    async def take_or_wait(self, shape: Shape) -> tuple[Spare | None, bool]:
        """A waiting spare of `shape`, else one being started that no other cold start waits
        for (it is ready sooner than a sandbox started now would be), else None; and whether
        it was waiting already."""
        spare = self.take(shape)
        if spare is not None:
            return spare, True
        if shape in self._ready:  # had spares, all taken: not a shape's very first cold start
            self._missed[shape] = time.monotonic()
        starting = self._unpromised.get(shape)
        if not starting:
            return None, False
        spare = await starting.pop(0)
        if spare is not None:
            self.claimed += 1
        return spare, False

    def refill(self, shape: Shape, after_s: float = 0.0) -> None:
        """Starts spares of `shape` in the background until `per_shape` wait; the shapes used
        longest ago lose theirs beyond `max_shapes`. `after_s`: not before then."""
        if self._closed or self.per_shape <= 0:
            return
        if after_s > 0:
            asyncio.get_running_loop().call_later(after_s, self.refill, shape)
            return
        self._ready.setdefault(shape, [])
        self._ready.move_to_end(shape)
        while len(self._ready) > self.max_shapes:
            _, dropped = self._ready.popitem(last=False)
            for spare in dropped:
                self._stop(spare)
        target = self.per_shape
        if time.monotonic() - self._missed.get(shape, -BUSY_S) < BUSY_S:
            target += 1  # cold starts come faster than spares: one more in the pipeline
        missing = target - len(self._ready[shape]) - self._starting.get(shape, 0)
        for _ in range(missing):
            self._starting[shape] = self._starting.get(shape, 0) + 1
            slot: asyncio.Future[Spare | None] = asyncio.get_running_loop().create_future()
            self._unpromised.setdefault(shape, []).append(slot)
            self._spawn(self._fill(shape, slot))

    async def _fill(self, shape: Shape, slot: asyncio.Future[Spare | None]) -> None:
        unpromised = self._unpromised.get(shape, [])
        spare, handed = None, False
        try:
            spare = await self._start(shape)
            self.started += 1
        except Exception:  # the next cold start starts a sandbox itself, and says why
            self.failed += 1
            log.warning("could not start a spare sandbox (%s)", shape, exc_info=True)
        finally:
            self._starting[shape] -= 1
            if slot in unpromised:  # nobody waits for it
                unpromised.remove(slot)
                slot.set_result(None)
            elif not slot.done():  # a cold start waits for this one: it gets it
                slot.set_result(spare)
                handed = spare is not None
        if spare is None or handed:
            return
        if self._closed or shape not in self._ready:
            await spare.instance.stop()
            return
        self._ready[shape].append(spare)

    def _stop(self, spare: Spare) -> None:
        self._spawn(spare.instance.stop())

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for waiting in self._ready.values():
            for spare in waiting:
                await spare.instance.stop()
        self._ready.clear()

    def stats(self) -> dict[str, Any]:
        waiting: dict[str, int] = {}
        for shape, spares in self._ready.items():
            waiting[shape.runtime] = waiting.get(shape.runtime, 0) + len(spares)
        return {
            "per_shape": self.per_shape,
            "waiting": sum(waiting.values()),
            "waiting_by_runtime": waiting,
            "starting": sum(self._starting.values()),
            "started": self.started,
            "claimed": self.claimed,
            "failed": self.failed,
        }


def package_tree(source: Path, max_files: int = MAX_LINKED_FILES) -> list[tuple[Path, bool]] | None:
    """`source`'s entries (relative path, is a folder), parents first; None when there are
    more than `max_files`."""
    entries: list[tuple[Path, bool]] = []
    for root, folders, files in os.walk(source):
        base = Path(root).relative_to(source)
        entries += [(base / name, not (Path(root) / name).is_symlink()) for name in folders]
        entries += [(base / name, False) for name in files]
        if len(entries) > max_files:
            return None
    return entries


def link_tree(source: Path, entries: list[tuple[Path, bool]], target: Path) -> None:
    """Fills the empty folder `target` with `source`'s `entries`: hard links where both are on
    one file system (a ready package's files never change), copies where not."""
    for relative, is_folder in entries:
        origin, copy = source / relative, target / relative
        if is_folder:
            copy.mkdir()
            copy.chmod(0o755)
        elif origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        else:
            try:
                os.link(origin, copy)
            except OSError:  # another file system, or links refused
                shutil.copy2(origin, copy)


def sweep_spare_folders(root: Path) -> int:
    """Removes the folders of spares whose process is gone ("spare-<pid>-..."), such as one
    killed with kill -9; returns how many."""
    removed = 0
    for folder in root.glob("spare-*-*"):
        pid = folder.name.split("-")[1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
