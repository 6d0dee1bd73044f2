"""Sphinx configuration for nettest's documentation."""

from __future__ import annotations

import sys
from pathlib import Path

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
    ("py:class", r"_(TCP|Unix|UDP)Options"),
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
