"""Every error the engine defines is in one tree, drawn in `engine.errors`' docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import engine
from engine import errors
from engine.errors import EngineError, MalformedError
from engine.ids import InvalidIdError
from engine.retry import InvalidScheduleError
from engine.signing import SigningError
from engine.ssrf import RefusedAddressError


def engine_errors() -> list[type[BaseException]]:
    """The public exception classes defined in any module of the engine."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{value.__module__}.{name}"] = value
    return sorted(found.values(), key=lambda cls: cls.__name__)


def test_the_walk_finds_the_errors_of_the_pure_modules() -> None:
    names = {cls.__name__ for cls in engine_errors()}

    assert {"InvalidIdError", "RefusedAddressError", "SignatureError", "EngineError"} <= names


@pytest.mark.parametrize("error", engine_errors(), ids=lambda cls: cls.__name__)
def test_each_engine_error_is_an_engine_error_drawn_in_the_tree(
    error: type[BaseException],
) -> None:
    drawn = "\n    EngineError\n" if error is EngineError else f"── {error.__name__} "
    assert issubclass(error, EngineError)
    assert drawn in (errors.__doc__ or ""), "draw it in engine.errors' tree"


def test_the_errors_keep_the_builtin_bases_their_callers_catch() -> None:
    assert issubclass(MalformedError, ValueError)
    assert issubclass(InvalidIdError, MalformedError)
    assert issubclass(InvalidScheduleError, MalformedError)
    assert issubclass(SigningError, MalformedError)
    assert issubclass(RefusedAddressError, PermissionError), "aiohttp wraps OSErrors only"
