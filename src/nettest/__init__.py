"""nettest: loopback servers, in-memory transports, TLS contexts, fragmentation strategies
and fault injection for testing asyncio network code with pytest.

This module only re-exports; each capability lives in its own private module.
`nettest.strategies` is not imported here, so that users who do not need
hypothesis never import it.
"""

from __future__ import annotations

from . import faults as faults
from . import handlers as handlers
from ._blackhole import BlackholePort as BlackholePort
from ._contract import ProtocolViolation as ProtocolViolation
from ._contract import SanitizedBufferedProtocol as SanitizedBufferedProtocol
from ._contract import SanitizedDatagramProtocol as SanitizedDatagramProtocol
from ._contract import SanitizedProtocol as SanitizedProtocol
from ._contract import sanitize as sanitize
from ._contract_suite import CONFORMANCE_CASES as CONFORMANCE_CASES
from ._contract_suite import HALF_CLOSE_CASES as HALF_CLOSE_CASES
from ._contract_suite import ConformanceError as ConformanceError
from ._contract_suite import TransportPairFactory as TransportPairFactory
from ._contract_suite import check_transport_case as check_transport_case
from ._contract_suite import check_transport_pair as check_transport_pair
from ._datagrams import MemoryDatagramTransport as MemoryDatagramTransport
from ._datagrams import memory_datagram_pair as memory_datagram_pair
from ._flow import FlowEvent as FlowEvent
from ._flow import ReadingEvent as ReadingEvent
from ._handlers import HandlerError as HandlerError
from ._handlers import ScriptMismatch as ScriptMismatch
from ._hygiene import LeakError as LeakError
from ._memory_faults import MemoryFaults as MemoryFaults
from ._memory_faults import inject_faults as inject_faults
from ._prebound import BoundSocket as BoundSocket
from ._proxy import FaultProxy as FaultProxy
from ._proxy import FaultProxyFactory as FaultProxyFactory
from ._proxy_thread import FaultProxyThread as FaultProxyThread
from ._proxy_thread import FaultProxyThreadFactory as FaultProxyThreadFactory
from ._recording import Connection as Connection
from ._recording import Datagram as Datagram
from ._recording import Ending as Ending
from ._recording import Event as Event
from ._recording import HandshakeFailure as HandshakeFailure
from ._recording import TLSInfo as TLSInfo
from ._resolver import FakeResolver as FakeResolver
from ._server_base import NoIPv6LoopbackError as NoIPv6LoopbackError
from ._servers import TCPServer as TCPServer
from ._servers import TCPServerFactory as TCPServerFactory
from ._servers import UnixServer as UnixServer
from ._servers import UnixServerFactory as UnixServerFactory
from ._servers import has_ipv6_loopback as has_ipv6_loopback
from ._stream_server import ServerTeardownWarning as ServerTeardownWarning
from ._threads import TCPServerThread as TCPServerThread
from ._threads import TCPServerThreadFactory as TCPServerThreadFactory
from ._threads import UDPServerThread as UDPServerThread
from ._threads import UDPServerThreadFactory as UDPServerThreadFactory
from ._threads import UnixDatagramServerThread as UnixDatagramServerThread
from ._threads import UnixDatagramServerThreadFactory as UnixDatagramServerThreadFactory
from ._threads import UnixServerThread as UnixServerThread
from ._threads import UnixServerThreadFactory as UnixServerThreadFactory
from ._tls import TLS_BAD_KINDS as TLS_BAD_KINDS
from ._tls import TLS_VERSIONS as TLS_VERSIONS
from ._tls import TLSBadKind as TLSBadKind
from ._tls import TLSClientContextFactory as TLSClientContextFactory
from ._tls import make_tls_client_context as make_tls_client_context
from ._tls import make_tls_server_context as make_tls_server_context
from ._tls_bad import TLSBadCase as TLSBadCase
from ._tls_bad import TLSBadCaseFactory as TLSBadCaseFactory
from ._tls_bad import make_tls_bad_case as make_tls_bad_case
from ._tls_files import TLSFiles as TLSFiles
from ._tls_files import write_tls_files as write_tls_files
from ._transport_pairs import memory_stream_pair as memory_stream_pair
from ._transport_pairs import memory_transport_pair as memory_transport_pair
from ._transports import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from ._transports import MemorySocket as MemorySocket
from ._transports import MemoryTransport as MemoryTransport
from ._udp import UDPServer as UDPServer
from ._udp import UDPServerFactory as UDPServerFactory
from ._udp import UnixDatagramServer as UnixDatagramServer
from ._udp import UnixDatagramServerFactory as UnixDatagramServerFactory
from ._udp import multicast_socket as multicast_socket
from ._version import __version__ as __version__

__all__ = [
    "CONFORMANCE_CASES",
    "DEFAULT_CAPACITY",
    "HALF_CLOSE_CASES",
    "TLS_BAD_KINDS",
    "TLS_VERSIONS",
    "BlackholePort",
    "BoundSocket",
    "ConformanceError",
    "Connection",
    "Datagram",
    "Ending",
    "Event",
    "FakeResolver",
    "FaultProxy",
    "FaultProxyFactory",
    "FaultProxyThread",
    "FaultProxyThreadFactory",
    "FlowEvent",
    "HandlerError",
    "HandshakeFailure",
    "LeakError",
    "MemoryDatagramTransport",
    "MemoryFaults",
    "MemorySocket",
    "MemoryTransport",
    "NoIPv6LoopbackError",
    "ProtocolViolation",
    "ReadingEvent",
    "SanitizedBufferedProtocol",
    "SanitizedDatagramProtocol",
    "SanitizedProtocol",
    "ScriptMismatch",
    "ServerTeardownWarning",
    "TCPServer",
    "TCPServerFactory",
    "TCPServerThread",
    "TCPServerThreadFactory",
    "TLSBadCase",
    "TLSBadCaseFactory",
    "TLSBadKind",
    "TLSClientContextFactory",
    "TLSFiles",
    "TLSInfo",
    "TransportPairFactory",
    "UDPServer",
    "UDPServerFactory",
    "UDPServerThread",
    "UDPServerThreadFactory",
    "UnixDatagramServer",
    "UnixDatagramServerFactory",
    "UnixDatagramServerThread",
    "UnixDatagramServerThreadFactory",
    "UnixServer",
    "UnixServerFactory",
    "UnixServerThread",
    "UnixServerThreadFactory",
    "__version__",
    "check_transport_case",
    "check_transport_pair",
    "handlers",
    "has_ipv6_loopback",
    "inject_faults",
    "make_tls_bad_case",
    "make_tls_client_context",
    "make_tls_server_context",
    "memory_datagram_pair",
    "memory_stream_pair",
    "memory_transport_pair",
    "multicast_socket",
    "sanitize",
    "write_tls_files",
]

# Errors and warnings print under the name users import them by (a traceback and
# ``-W ignore::nettest.ServerTeardownWarning`` say ``nettest.X``).
for _class in (
    ConformanceError,
    HandlerError,
    NoIPv6LoopbackError,
    ProtocolViolation,
    ScriptMismatch,
    ServerTeardownWarning,
):
    _class.__module__ = __name__
del _class
