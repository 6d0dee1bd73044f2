"""What the two backends of the fault vocabulary share.

The same fault values drive the loopback proxy (`nettest._proxy`) and the
memory transports (`nettest._memory_faults`).  A test changes the faults of
either in the same way, through `FaultsInForce`; this module holds that once.
"""

from __future__ import annotations

import typing

# Imported at run time although only annotations use it: autodoc evaluates the
# annotations of the classes built on FaultsInForce, this one's ``_faults`` too.
from ._faults import Fault  # noqa: TC001

if typing.TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["FaultsInForce"]


class FaultsInForce:
    """The faults in force on a proxy or a memory pair, and the calls that change them.

    A subclass sets ``_faults`` in its constructor, refuses what does not apply
    to it in `_check`, and carries a change out in `_faults_changed`.
    """

    _faults: tuple[Fault, ...]

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force, in the order they apply."""
        return self._faults

    def add(self, fault: Fault) -> None:
        """Add a fault; it applies at once, to what is already open too (counting from now).

        Raises:
            ValueError: The fault does not apply to this kind of proxy or pair.
        """
        self._set((*self._faults, *self._check([fault])))

    def remove(self, fault: Fault) -> None:
        """Remove a fault.  Never blocks; bytes it held (see `~nettest.faults.Stall`) flow again.

        Raises:
            ValueError: The fault is not in force.
        """
        if fault not in self._faults:
            raise ValueError(f"{fault!r} is not in force; faults: {list(self._faults)}")
        self._set(tuple(f for f in self._faults if f != fault))

    def clear(self) -> None:
        """Remove every fault."""
        self._set(())

    def _set(self, faults: tuple[Fault, ...]) -> None:
        self._faults = faults
        self._faults_changed(faults)

    def _check(self, faults: Iterable[Fault]) -> tuple[Fault, ...]:
        """Return *faults* as a tuple, refusing those that do not apply here."""
        raise NotImplementedError

    def _faults_changed(self, faults: tuple[Fault, ...]) -> None:
        """Apply the faults now in force to what is open."""
        raise NotImplementedError
