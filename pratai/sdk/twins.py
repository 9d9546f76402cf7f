"""One surface, run two ways: each public call of the SDK is written once, as an exchange
(`protocol.py`), and decorated with `@operation`. On a `Blocking` object (`Client`, `Job`, ...)
the method runs the exchange and returns its value; on an `Awaiting` twin (`AsyncClient`,
`AsyncJob`, ...) it is a coroutine function. Either way the signature and docstring are the
exchange's, so the two surfaces cannot drift apart (tests/sdk/test_surface.py checks the rest).

Both kinds of object carry out an exchange with `_run(exchange)`: a client sends its requests,
and a handle (a job, an invocation) borrows its client's."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from pratai.sdk.protocol import Exchange

__all__ = ["Awaiting", "Blocking", "operation"]

S = TypeVar("S")
P = ParamSpec("P")
T = TypeVar("T")


class Blocking:
    """An object whose operations return once their exchange has run."""

    _run: Callable[[Exchange[Any]], Any]


class Awaiting:
    """An object whose operations are coroutines: the asyncio twin."""

    _run: Callable[[Exchange[Any]], Coroutine[Any, Any, Any]]


class operation(Generic[S, P, T]):
    def __init__(self, exchange: Callable[Concatenate[S, P], Exchange[T]]) -> None:
        self.__wrapped__ = exchange
        self.__doc__ = exchange.__doc__

        @functools.wraps(exchange)
        def blocking(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            return obj._run(exchange(obj, *args, **kwargs))

        @functools.wraps(exchange)
        async def awaiting(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            return await obj._run(exchange(obj, *args, **kwargs))

        self._blocking, self._awaiting = blocking, awaiting

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, obj: Blocking, owner: type | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: Awaiting, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Callable[..., Any]:
        twin = type(obj) if owner is None else owner
        method = self._awaiting if issubclass(twin, Awaiting) else self._blocking
        return method if obj is None else types.MethodType(method, obj)
