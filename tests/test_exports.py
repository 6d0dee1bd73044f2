"""Every public name is exported through `__all__`, and every one is documented."""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

import nettest
import nettest.plugin

DOCS = Path(__file__).resolve().parent.parent / "docs"
PUBLIC_MODULES = ["nettest", "nettest.strategies", "nettest.handlers", "nettest.faults"]


def public_modules() -> list[str]:
    found = []
    for name in PUBLIC_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        found.append(name)
    return found


def docs_text() -> str:
    return "\n".join(path.read_text() for path in DOCS.rglob("*.rst"))


@pytest.mark.parametrize("module_name", public_modules())
def test_exports_all_matches_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"
        and getattr(value, "__module__", module_name).startswith("nettest")
    }
    assert public <= set(module.__all__), "public names missing from __all__"
    assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("module_name", public_modules())
def test_exports_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    text = docs_text()
    missing = [
        name
        for name in module.__all__
        if name != "__version__"
        and not re.search(rf"(::|`)\s*~?(nettest\.)?({module_name}\.)?{name}\b", text)
    ]
    assert not missing, f"undocumented in docs/: {missing}"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.final sets __final__ from 3.11")
def test_exports_public_classes_are_final() -> None:
    for name in nettest.__all__:
        value = getattr(nettest, name)
        # Exceptions may be subclassed to catch them; an Enum with members cannot be.
        if inspect.isclass(value) and not issubclass(value, (BaseException, enum.Enum)):
            is_protocol = getattr(value, "_is_protocol", False)
            assert is_protocol or getattr(value, "__final__", False), f"{name} is not @final"


@pytest.mark.parametrize("module_name", public_modules())
def test_exports_errors_are_named_as_imported(module_name: str) -> None:
    # A traceback, and a -W filter, name an error or warning by its __module__.
    module = importlib.import_module(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            where = value.__module__
            public = where in PUBLIC_MODULES and getattr(sys.modules[where], name, None) is value
            assert public, f"{name} prints as {where}.{name}"


def test_exports_fixtures_are_documented() -> None:
    text = docs_text()
    fixtures = [
        name
        for name, value in vars(nettest.plugin).items()
        if type(value).__name__ == "FixtureFunctionDefinition"
        or hasattr(value, "_pytestfixturefunction")
    ]
    assert "nettest_seed" in fixtures
    missing = [name for name in fixtures if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"fixtures undocumented in docs/: {missing}"


# The fixtures whose signatures docs/ writes out by hand, and what each calls.
_DOCUMENTED_SIGNATURES: dict[str, tuple[Callable[..., object], set[str]]] = {
    "tcp_server": (nettest.TCPServer, set()),
    "udp_server": (nettest.UDPServer, set()),
    "unix_server": (nettest.UnixServer, set()),
    "unix_datagram_server": (nettest.UnixDatagramServer, set()),
    # The fixtures seed each proxy themselves.
    "fault_proxy": (nettest.FaultProxy, {"seed"}),
    "fault_proxy_thread": (nettest.FaultProxy, {"seed"}),
}


def documented_signatures() -> dict[str, list[ast.arguments]]:
    found: dict[str, list[ast.arguments]] = {}
    for line in docs_text().splitlines():
        match = re.match(r"\.\. py:function:: (\w+)\((.*)\)$", line)
        if match and match[1] in _DOCUMENTED_SIGNATURES:
            function = ast.parse(f"def f({match[2]}): pass").body[0]
            assert isinstance(function, ast.FunctionDef)
            found.setdefault(match[1], []).append(function.args)
    return found


@pytest.mark.parametrize("name", sorted(_DOCUMENTED_SIGNATURES))
def test_exports_fixture_signatures_in_docs_match_the_code(name: str) -> None:
    # A signature written out in docs/ names every parameter, in order, with its
    # real default: one added to the code must be added there too.
    target, left_out = _DOCUMENTED_SIGNATURES[name]
    code = [
        parameter
        for parameter in inspect.signature(target).parameters.values()
        if parameter.name not in left_out
    ]
    (documented,) = documented_signatures()[name]
    positional = [argument.arg for argument in documented.args]
    keywords = [argument.arg for argument in documented.kwonlyargs]
    assert positional + keywords == [parameter.name for parameter in code]
    assert positional == [p.name for p in code if p.kind is not p.KEYWORD_ONLY]
    namespace = {"handlers": nettest.handlers}
    defaults: dict[str, ast.expr | None] = dict(
        zip(positional[::-1], documented.defaults[::-1], strict=False)
    )
    defaults.update(zip(keywords, documented.kw_defaults, strict=True))
    for parameter in code:
        written = defaults.get(parameter.name)
        if written is None:
            assert parameter.default is parameter.empty, f"{parameter.name} has no default"
        else:
            value = eval(compile(ast.Expression(written), name, "eval"), namespace)
            assert value == parameter.default, parameter.name


def public_classes() -> list[type]:
    classes = {
        value
        for module_name in public_modules()
        for value in map(
            vars(importlib.import_module(module_name)).get, sys.modules[module_name].__all__
        )
        if inspect.isclass(value)
    }
    return sorted(classes, key=lambda klass: klass.__qualname__)


@pytest.mark.parametrize("klass", public_classes(), ids=lambda klass: klass.__qualname__)
def test_exports_property_docstrings_open_with_a_sentence(klass: type) -> None:
    # The docs' napoleon reads a property's first line "X: Y" as type X and
    # description Y, so "``(host, port)``: pass it to ..." rendered garbled.
    garbled = []
    for owner in klass.__mro__:
        for name, value in vars(owner).items():
            if isinstance(value, property) and owner.__module__.startswith("nettest"):
                first_line = (inspect.getdoc(value) or "").split("\n\n")[0].replace("\n", " ")
                if re.search(r"(?<!:):\s", re.sub(r"`[^`]*`", "", first_line)):
                    garbled.append(f"{owner.__qualname__}.{name}: {first_line}")
    assert not garbled


def defining_comment(name: str, value: object) -> str | None:
    """The ``#:`` comment above the assignment of *name* in nettest's private modules."""
    for module_name, module in sys.modules.items():
        if module_name.startswith("nettest._") and vars(module).get(name) is value:
            lines = inspect.getsource(module).splitlines()
            for node in ast.parse("\n".join(lines)).body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [getattr(node, "target", None)]
                )
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    above = lines[node.lineno - 2].strip()
                    return above if above.startswith("#:") else None
    return None


@pytest.mark.parametrize("module_name", public_modules())
def test_exports_constants_are_described_where_they_are_made(module_name: str) -> None:
    # The docs' autodata shows a re-exported constant's ``#:`` comment from the
    # module that makes it (docs/conf.py); without one it shows its type's docstring.
    module = importlib.import_module(module_name)
    constants = [
        name
        for name in module.__all__
        if not (inspect.isclass(value := getattr(module, name)) or inspect.isroutine(value))
        and not inspect.ismodule(value)
        and name != "__version__"
        and typing.get_origin(value) is None
    ]
    assert module_name != "nettest" or "DEFAULT_CAPACITY" in constants
    undescribed = [
        name for name in constants if defining_comment(name, getattr(module, name)) is None
    ]
    assert not undescribed


def test_exports_the_docs_name_every_bad_tls_kind() -> None:
    # The API page lists TLSBadKind's values by hand: a kind added to the code
    # must be added there too.
    text = (DOCS / "api" / "tls.rst").read_text()
    paragraph = text.split(".. py:type:: TLSBadKind", 1)[1].split(".. ", 1)[0]
    assert re.findall(r'``"(\w+)"``', paragraph) == list(nettest.TLS_BAD_KINDS)
