"""Build intersphinx inventories offline, by introspecting the installed packages.

The docs build runs where the network is closed, so it cannot download
``objects.inv`` from docs.python.org and friends.  Instead this module walks the
public names of the modules nettest's docs refer to and writes an inventory that
maps each one (under its public name and its defining module's name, which is
what autodoc prints) to the anchor the upstream documentation uses.
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

#: project -> (base URL, page for a module's objects, modules to walk)
SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "python": (
        "https://docs.python.org/3/",
        "library/{module}.html",
        (
            "asyncio",
            "ssl",
            "socket",
            "typing",
            "collections.abc",
            "pathlib",
            "os",
            "random",
            "http.client",
            "email.parser",
            "contextlib",
            "dataclasses",
            "enum",
            "ipaddress",
            "argparse",
            "threading",
            "concurrent.futures",
            "weakref",
            "traceback",
            "subprocess",
            "tempfile",
            "datetime",
        ),
    ),
    "pytest": (
        "https://docs.pytest.org/en/stable/",
        "reference/reference.html",
        ("pytest",),
    ),
    "hypothesis": (
        "https://hypothesis.readthedocs.io/en/latest/",
        "reference/api.html",
        ("hypothesis", "hypothesis.strategies", "hypothesis.stateful", "hypothesis.errors"),
    ),
    "trustme": ("https://trustme.readthedocs.io/en/latest/", "index.html", ("trustme",)),
}

_ASYNCIO_PAGES = {
    "BaseTransport": "asyncio-protocol",
    "Transport": "asyncio-protocol",
    "ReadTransport": "asyncio-protocol",
    "WriteTransport": "asyncio-protocol",
    "DatagramTransport": "asyncio-protocol",
    "BaseProtocol": "asyncio-protocol",
    "Protocol": "asyncio-protocol",
    "BufferedProtocol": "asyncio-protocol",
    "DatagramProtocol": "asyncio-protocol",
    "StreamReader": "asyncio-stream",
    "StreamWriter": "asyncio-stream",
    "AbstractEventLoop": "asyncio-eventloop",
    "Server": "asyncio-eventloop",
    "Task": "asyncio-task",
    "Future": "asyncio-future",
    "Event": "asyncio-sync",
    "Queue": "asyncio-queue",
    "TimeoutError": "asyncio-exceptions",
    "IncompleteReadError": "asyncio-exceptions",
    "LimitOverrunError": "asyncio-exceptions",
}

_BUILTINS = {
    "bytes": "py:class",
    "bytearray": "py:class",
    "memoryview": "py:class",
    "str": "py:class",
    "int": "py:class",
    "float": "py:class",
    "bool": "py:class",
    "object": "py:class",
    "list": "py:class",
    "dict": "py:class",
    "tuple": "py:class",
    "set": "py:class",
    "frozenset": "py:class",
    "type": "py:class",
    "None": "py:data",
    "Exception": "py:exception",
    "BaseException": "py:exception",
    "ValueError": "py:exception",
    "TypeError": "py:exception",
    "RuntimeError": "py:exception",
    "OSError": "py:exception",
    "AssertionError": "py:exception",
    "ConnectionError": "py:exception",
    "ConnectionResetError": "py:exception",
    "ConnectionRefusedError": "py:exception",
    "ConnectionAbortedError": "py:exception",
    "BrokenPipeError": "py:exception",
    "TimeoutError": "py:exception",
    "NotImplementedError": "py:exception",
    "ResourceWarning": "py:exception",
    "KeyError": "py:exception",
    "EOFError": "py:exception",
}


def _role(obj: object) -> str:
    if inspect.isclass(obj):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj):
        return "py:function"
    if inspect.ismodule(obj):
        return "py:module"
    return "py:data"


def _entries(project: str) -> Iterator[tuple[str, str, str]]:
    _base, page, modules = SOURCES[project]
    if project == "python":
        for name, role in _BUILTINS.items():
            doc = "library/exceptions.html" if role == "py:exception" else "library/stdtypes.html"
            if name in {"int", "float", "bool", "object", "list", "dict", "tuple", "set"}:
                doc = "library/functions.html"
            if name == "None":
                doc = "library/constants.html"
            yield name, role, f"{doc}#{name}"
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        yield module_name, "py:module", page.format(module=module_name) + f"#module-{module_name}"
        for name in getattr(module, "__all__", None) or dir(module):
            if name.startswith("_"):
                continue
            obj = getattr(module, name, None)
            if obj is None or inspect.ismodule(obj):
                continue
            role = _role(obj)
            target = page.format(module=module_name)
            if module_name == "asyncio":
                target = f"library/{_ASYNCIO_PAGES.get(name, 'asyncio-api-index')}.html"
            anchor = f"{module_name}.{name}"
            names = {anchor}
            defined_in = getattr(obj, "__module__", None)
            if inspect.isclass(obj) and isinstance(defined_in, str):
                names.add(f"{defined_in}.{obj.__qualname__}")
            for full in names:
                yield full, role, f"{target}#{anchor}"
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if member.startswith("_"):
                        continue
                    kind = "py:method" if callable(value) else "py:attribute"
                    for full in names:
                        yield f"{full}.{member}", kind, f"{target}#{anchor}.{member}"


def write_inventory(project: str, version: str, path: Path) -> Path:
    """Write the inventory for `project` to `path` and return it."""
    lines: list[str] = []
    seen: set[tuple[str, str]] = set()
    for name, role, uri in _entries(project):
        if (name, role) in seen:
            continue
        seen.add((name, role))
        lines.append(f"{name} {role} 1 {uri} -")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress("\n".join(sorted(lines)).encode() + b"\n"))
    return path


def mapping(directory: Path) -> dict[str, tuple[str, str]]:
    """Return an ``intersphinx_mapping`` whose inventories are built into `directory`."""
    result: dict[str, tuple[str, str]] = {}
    for project, (base, _page, _modules) in SOURCES.items():
        inventory = write_inventory(project, "installed", directory / f"{project}.inv")
        result[project] = (base, str(inventory))
    return result


def names(project: str) -> Iterable[str]:
    """The names an inventory for `project` would hold (for checking the docs' references)."""
    return (name for name, _, _ in _entries(project))
