"""The ``nettest`` command."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the ``nettest`` command."""
    return 0
