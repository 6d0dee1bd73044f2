"""nettest: loopback servers, in-memory transports, TLS contexts, fragmentation strategies
and fault injection for testing asyncio network code with pytest.

This module only re-exports; each capability lives in its own private module.
`nettest.strategies` is not imported here, so that users who do not need
hypothesis never import it.
"""

from __future__ import annotations

from . import faults as faults
from ._hygiene import LeakError as LeakError
from ._memory_faults import MemoryFaults as MemoryFaults
from ._memory_faults import inject_faults as inject_faults
from ._proxy import FaultProxy as FaultProxy
from ._proxy import FaultProxyFactory as FaultProxyFactory
from ._tls import TLS_BAD_KINDS as TLS_BAD_KINDS
from ._tls import TLS_VERSIONS as TLS_VERSIONS
from ._tls import TLSBadKind as TLSBadKind
from ._tls import make_tls_client_context as make_tls_client_context
from ._tls import make_tls_server_context as make_tls_server_context
from ._tls_bad import TLSBadCase as TLSBadCase
from ._tls_bad import TLSBadCaseFactory as TLSBadCaseFactory
from ._tls_bad import make_tls_bad_case as make_tls_bad_case
from ._tls_files import TLSFiles as TLSFiles
from ._tls_files import write_tls_files as write_tls_files
from ._version import __version__ as __version__

__all__ = [
    "TLS_BAD_KINDS",
    "TLS_VERSIONS",
    "FaultProxy",
    "FaultProxyFactory",
    "LeakError",
    "MemoryFaults",
    "TLSBadCase",
    "TLSBadCaseFactory",
    "TLSBadKind",
    "TLSFiles",
    "__version__",
    "inject_faults",
    "make_tls_bad_case",
    "make_tls_client_context",
    "make_tls_server_context",
    "write_tls_files",
]
