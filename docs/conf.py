"""Sphinx configuration for nettest's documentation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer

import nettest

sys.path.insert(0, str(Path(__file__).parent))
from _inventory import mapping

project = "nettest"
author = "The nettest developers"
copyright = "2026, The nettest developers"
release = nettest.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

html_theme = "furo"
html_title = f"nettest {release}"

default_role = "py:obj"
nitpicky = True
nitpick_ignore_regex = [
    # Private types that appear in public signatures through annotations.
    ("py:class", r"nettest\._.*"),
    ("py:class", r"_pytest\..*"),
    ("py:class", r"asyncio\.(events|transports|protocols|streams|base_events)\..*"),
    ("py:class", r"^(T|_T|T_co|_P)$"),
    ("py:class", r"collections\.abc\.Buffer"),
    ("py:class", r"(hypothesis\.)?strategies\..*"),
    ("py:class", r"hypothesis\.strategies\._internal\..*"),
    ("py:class", r"trustme\..*"),
    ("py:class", r"ssl\._.*"),
    ("py:class", r"socket\._.*"),
    ("py:class", r"(DrawFn|SearchStrategy|Ex)"),
    # The thread servers' **options: their servers' keywords, typed for mypy.
    ("py:class", r"_(TCP|Unix|UDP|UnixDatagram)Options"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Inventories are built from the installed packages: the docs build offline.
intersphinx_mapping = mapping(Path(__file__).parent / "_build" / "inventories")
exclude_patterns = ["_build", "examples/README.md"]


def _defining_comment(name: str, obj: object) -> list[str] | None:
    """The ``#:`` comment above the private module's assignment of a re-exported constant.

    autodoc reads such comments only in the module a name is documented under
    (``nettest``, which just imports it), and otherwise shows the docstring of
    the value's type, such as ``tuple``'s.
    """
    attribute = name.rpartition(".")[2]
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith("nettest._") and vars(module).get(attribute) is obj:
            comments = ModuleAnalyzer.for_module(module_name).find_attr_docs()
            if ("", attribute) in comments:
                return list(comments["", attribute])
    return None


def _document_constant(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if what == "data" and (comment := _defining_comment(name, obj)) is not None:
        lines[:] = comment


def setup(app: Sphinx) -> None:
    # After napoleon's handler: a comment is plain reST, not a Google-style field.
    app.connect("autodoc-process-docstring", _document_constant, priority=600)
