"""The command-line client and the process entry points (``flotilla <verb>``).

gRPC's C core logs every failed TLS handshake at INFO on stderr; the CLI says what went
wrong in one line of its own, so the core's chatter is limited to errors unless the user
asks for more (``GRPC_VERBOSITY``). Set before anything imports grpc.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
