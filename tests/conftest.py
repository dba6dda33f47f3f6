"""Shared test settings and fixtures (an offline Hub cache), and the tests that need the datasets and teacher
models kept outside the repository.

Those live in the folder ``train.paths.SHARED``: ``$SEGFORMER_SHARED``, by default ``shared`` beside the repository.
A test needs it when the test, a fixture it requests, or a function of its module that they call names a module
constant that lies under ``SHARED`` (``DATASETS``, ``MODELS``, ``MSRC``, ...). Where such a path is missing the test
is skipped with :data:`MISSING` as its reason; under ``CI=true`` it fails instead, so CI never passes on a partial run.
Every other test runs on what the repository ships (``examples/``, ``checkpoints/``) or on data it makes itself.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

import huggingface_hub
import pytest
import torch

from train.paths import SHARED

MISSING = f"needs the datasets and teacher models in {SHARED} (not found): set SEGFORMER_SHARED=/path/to/shared"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true")


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """Values, not speed, are tested: one intra-op thread is much faster on a shared, busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache, with huggingface_hub offline and pointed at it.

    huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported, so setting the environment is not
    enough in a running process: its constants, read at each call, are patched as well.
    """
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def under_shared(value: object) -> bool:
    """Whether ``value`` is a path inside the shared folder."""
    return isinstance(value, Path) and value.is_relative_to(SHARED)


def own_function(value: object, module: ModuleType) -> FunctionType | None:
    """The plain function behind a function or fixture defined in ``module``; None for anything else."""
    function = getattr(value, "__wrapped__", value)  # a fixture wraps its function
    return function if isinstance(function, FunctionType) and function.__module__ == module.__name__ else None


def shared_paths(item: pytest.Function) -> set[Path]:
    """The module constants under SHARED that a test reaches: its parameters, and the names in its code, in the
    code of the fixtures it requests and in that of the module's functions these call (followed to any depth)."""
    namespace: dict[str, Any] = vars(item.module)
    params = item.callspec.params.values() if hasattr(item, "callspec") else ()
    found = {value for value in params if under_shared(value)}
    functions = [item.function, *(own_function(namespace.get(name), item.module) for name in item.fixturenames)]
    codes = [function.__code__ for function in functions if function is not None]
    seen: set[CodeType] = set()
    while codes:
        code = codes.pop()
        if code in seen:
            continue
        seen.add(code)
        codes += [const for const in code.co_consts if isinstance(const, CodeType)]  # nested functions, lambdas
        for name in code.co_names:
            value = namespace.get(name)
            if under_shared(value):
                found.add(value)
            elif (function := own_function(value, item.module)) is not None:
                codes.append(function.__code__)
    return found


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``shared`` marker that ``pytest_collection_modifyitems`` sets."""
    config.addinivalue_line("markers", f"shared: needs the datasets and teacher models in {SHARED} (SEGFORMER_SHARED)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test that reaches the shared folder with ``shared(*paths)``, the paths it reaches."""
    for item in items:
        if isinstance(item, pytest.Function) and (paths := shared_paths(item)):
            item.add_marker(pytest.mark.shared(*sorted(paths)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture runs: skip a ``shared`` test whose paths are missing, or fail it in CI."""
    marker = item.get_closest_marker("shared")
    if marker is not None and not all(path.exists() for path in marker.args):
        if IN_CI:
            pytest.fail(f"{MISSING} (CI=true: these tests may not be skipped)", pytrace=False)
        pytest.skip(MISSING)
