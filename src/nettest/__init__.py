"""nettest: loopback servers, in-memory transports, TLS contexts, fragmentation strategies
and fault injection for testing asyncio network code with pytest.

This module only re-exports; each capability lives in its own private module.
`nettest.strategies` is not imported here, so that users who do not need
hypothesis never import it.
"""

from __future__ import annotations

from ._hygiene import LeakError as LeakError
from ._version import __version__ as __version__

__all__ = [
    "LeakError",
    "__version__",
]
