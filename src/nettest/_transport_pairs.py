"""Connected pairs of memory stream transports: `memory_transport_pair`, `memory_stream_pair`.

Each pair is two :class:`~nettest.MemoryTransport` ends joined by one
:class:`nettest._links.Link` per direction, like the two sockets of a TCP
connection; `memory_stream_pair` puts asyncio streams on top, with the server
end able to ``start_tls`` as the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ._endpoint import check_bool, check_count, check_protocol, connection_addresses
from ._hygiene import writer_dropped
from ._links import Link
from ._transport_reading import _Chunker
from ._transports import DEFAULT_CAPACITY, MemoryTransport, _check_capacity, _check_partial_writes

__all__ = ["memory_stream_pair", "memory_transport_pair"]


def memory_transport_pair(
    client_protocol: asyncio.BaseProtocol,
    server_protocol: asyncio.BaseProtocol,
    *,
    capacity: int = DEFAULT_CAPACITY,
    manual: bool = False,
    partial_writes: int | Callable[[int], int] | None = None,
    chunks: Sequence[int] | Callable[[int], int] | None = None,
    client_address: Any = None,
    server_address: Any = None,
    family: int | None = None,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect two protocols through two :class:`MemoryTransport` objects.

    The pair behaves like a TCP connection on the running loop: each direction
    holds at most ``capacity`` bytes in flight, so a receiver that stops reading
    fills it, then the sender's write buffer grows, then ``pause_writing`` fires.
    Both ``connection_made`` calls come on the next loop turn.

    Args:
        client_protocol: Connected to the first transport.
        server_protocol: Connected to the second transport.
        capacity: Bytes in flight per direction (the kernel buffers).
        manual: If true, nothing moves until :meth:`MemoryTransport.pump`.
        partial_writes: How much of each send the peer accepts, for both ends.
        chunks: How each receiver's reads are cut, for both ends.
        client_address: The client's address (default: loopback, ephemeral port).
        server_address: The server's address (default: loopback, port 8080).
        family: `socket.AF_INET`, `socket.AF_INET6` or `socket.AF_UNIX`
            (default: the family of the addresses given, else IPv4).

    Returns:
        ``(client_transport, server_transport)``.

    Raises:
        TypeError: a protocol without the methods of an `asyncio.Protocol` (or
            `asyncio.BufferedProtocol`), or ``capacity``, ``partial_writes``,
            ``chunks`` or ``family`` of the wrong type, or an address that is not
            one of ``family``.
        ValueError: ``capacity``, ``partial_writes`` or a chunk size below 1, an
            unknown ``family``, an address out of range, or the two addresses of
            different families.

    Example:
        ::

            client, server = memory_transport_pair(ClientProtocol(), ServerProtocol())
            await asyncio.sleep(0)  # connection_made on both sides
            client.write(b"hello")
    """
    check_protocol("client_protocol", client_protocol, "stream")
    check_protocol("server_protocol", server_protocol, "stream")
    check_bool("manual", manual)
    _check_capacity(capacity)
    _check_partial_writes(partial_writes)
    _Chunker(chunks)
    family, client_address, server_address = connection_addresses(
        family, client_address, server_address
    )
    if isinstance(chunks, Sequence):
        chunks = list(chunks)  # each end uses its own copy
    client = MemoryTransport._create_unlinked(
        client_protocol,
        sockname=client_address,
        peername=server_address,
        family=family,
        chunks=chunks,
    )
    server = MemoryTransport._create_unlinked(
        server_protocol,
        sockname=server_address,
        peername=client_address,
        family=family,
        chunks=chunks,
    )
    for sender, receiver in ((client, server), (server, client)):
        link = Link(
            sender, receiver, capacity=capacity, manual=manual, partial_writes=partial_writes
        )
        sender._out = link
        receiver._in = link
    client._peer, server._peer = server, client
    client._start()
    server._start()
    return client, server


def memory_stream_pair(
    *,
    capacity: int = DEFAULT_CAPACITY,
    limit: int = 2**16,
    manual: bool = False,
    partial_writes: int | Callable[[int], int] | None = None,
    chunks: Sequence[int] | Callable[[int], int] | None = None,
    client_address: Any = None,
    server_address: Any = None,
    family: int | None = None,
) -> tuple[
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
]:
    """Make two connected asyncio streams over a :func:`memory_transport_pair`.

    What ``asyncio.open_connection`` and a server's callback would give, in memory:
    the writers' ``drain()`` blocks while the peer does not read, and
    ``StreamWriter.start_tls`` works on both sides (the server side negotiates as
    the server).  Must be called while the loop runs.

    Args:
        capacity: Bytes in flight per direction.
        limit: The readers' buffer limit (as for `asyncio.open_connection`).
        manual: If true, nothing moves until a transport's ``pump()``.
        partial_writes: How much of each send the peer accepts.
        chunks: How each reader's data is cut.
        client_address: The client's address (default: loopback, ephemeral port).
        server_address: The server's address (default: loopback, port 8080).
        family: `socket.AF_INET`, `socket.AF_INET6` or `socket.AF_UNIX` (which
            closes as a Unix socket does, see `memory_transport_pair`; default:
            the family of the addresses given, else IPv4).

    Returns:
        ``((client_reader, client_writer), (server_reader, server_writer))``.

    Raises:
        TypeError: an argument of the wrong type (see `memory_transport_pair`), or
            ``limit`` not an int.
        ValueError: an argument out of range, or ``limit`` below 1.

    Example:
        ::

            (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
            c_writer.write(b"hi\\n")
            assert await s_reader.readline() == b"hi\\n"
    """
    check_count("limit", limit)
    loop = asyncio.get_running_loop()
    client_reader = asyncio.StreamReader(limit=limit, loop=loop)
    server_reader = asyncio.StreamReader(limit=limit, loop=loop)
    client_protocol = asyncio.StreamReaderProtocol(client_reader, loop=loop)
    server_protocol = _ServerStreamProtocol(server_reader, _server_side_marker, loop=loop)
    client_transport, server_transport = memory_transport_pair(
        client_protocol,
        server_protocol,
        capacity=capacity,
        manual=manual,
        partial_writes=partial_writes,
        chunks=chunks,
        client_address=client_address,
        server_address=server_address,
        family=family,
    )
    # A fault layer paces a Slice's pieces by what each reader has taken.
    client_transport._in.reader_above = (client_protocol, client_reader)
    server_transport._in.reader_above = (server_protocol, server_reader)
    client_writer = _MemoryStreamWriter(client_transport, client_protocol, client_reader, loop)
    server_writer = _MemoryStreamWriter(server_transport, server_protocol, server_reader, loop)
    return (client_reader, client_writer), (server_reader, server_writer)


class _MemoryStreamWriter(asyncio.StreamWriter):
    """The writer of a memory stream pair: tells the hygiene gate if it is dropped open.

    On Python >= 3.11.5 ``StreamWriter.__del__`` closes the transport of a writer
    dropped without ``close()`` and only warns, with a ResourceWarning the default
    filters hide: by the test's check the transport looks closed.  This writer
    tells the gate first, which reports it against the test that made the pair.
    Before 3.11.5 nothing closes the transport, and the gate finds it open.
    """

    def __init__(
        self,
        transport: MemoryTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        # start_tls() replaces the writer's transport; the gate tracks this one.
        self._memory_transport = transport

    def __repr__(self) -> str:
        # asyncio's, which names the class: this one is an implementation detail.
        return "<StreamWriter" + super().__repr__().removeprefix(f"<{type(self).__name__}")

    def __del__(self) -> None:
        closes_it = getattr(super(), "__del__", None)
        if closes_it is None:  # Python < 3.11.5
            return
        if not writer_dropped(self, getattr(self, "_memory_transport", None)):
            closes_it()  # unless the gate closed it quietly, to report it itself


class _ServerStreamProtocol(asyncio.StreamReaderProtocol):
    """The server end of a memory stream pair.

    ``StreamWriter.start_tls()`` negotiates as the server when the protocol has a
    ``client_connected_cb``.  This protocol has one, but hides it from
    ``connection_made`` so that the protocol does not make a second writer.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        state = self.__dict__
        callback, state["_client_connected_cb"] = state["_client_connected_cb"], None
        try:
            super().connection_made(transport)
        finally:
            state["_client_connected_cb"] = callback


def _server_side_marker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Marks a memory stream protocol as the server's (never called)."""
