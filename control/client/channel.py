"""The one place that opens gRPC channels (server side options live here too).

Every component (CLI, agent, scheduler, controllers, tests) gets its channel from
:func:`open_channel`, so message size limits, keepalive, TLS and credentials are decided
once: every channel is TLS (gRPC's ssl credentials; the cluster's servers negotiate TLS
1.3), with the client certificate or bearer token of its :class:`Credentials`. There is no
plaintext channel. Channels are ``grpc.aio`` channels: create and use them on one event
loop. ``open_channel`` with ``insecure_skip_verify`` makes one blocking TLS probe first.
"""

from __future__ import annotations

import grpc

from control.client.tls import Credentials, channel_credentials

# Real lists (thousands of pods) exceed gRPC's 4 MB default.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Long watch streams: ping every 30 s so dead peers and idle NAT/conntrack entries are found.
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # reconnect quickly after a server restart; the informers add their own jittered backoff
    ("grpc.initial_reconnect_backoff_ms", 200),
    # at most 1 s between attempts: a restarted server is found within a second (a refused
    # connect costs next to nothing), and informers waiting for it resume then
    ("grpc.max_reconnect_backoff_ms", 1_000),
]

SERVER_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
    # calls beyond this many, waiting for the asyncio server to pick them up, are
    # cancelled (default 1,000): 1,000+ agents re-opening their watches after a server
    # restart arrive at once
    ("grpc.server.max_pending_requests", 10_000),
]


# The apiserver's cap on one request (Kubernetes': 3 MiB), enforced by gRPC before anything
# is decoded: an oversized request costs the server no memory beyond its transport buffers
# and is answered RESOURCE_EXHAUSTED.
DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024


# A connection that has not completed its TLS handshake this long after connecting is
# closed (gRPC's default is 120 s): idle sockets cannot pile up and exhaust descriptors.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
# A connection with no call for this long gets a GOAWAY (clients reconnect when needed;
# watching clients always have a call open).
DEFAULT_MAX_CONNECTION_IDLE = 15 * 60.0


# Streams (calls) one client may have open on one connection at once, as kube-apiserver's
# --http2-max-streams-per-connection: a client beyond it waits in its own HTTP/2 layer,
# which costs the server nothing (a flood's calls otherwise cost the server's transport
# CPU before any admission can refuse them).
DEFAULT_MAX_STREAMS_PER_CONNECTION = 1000


def server_options(max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, *,
                   handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                   max_connection_idle: float = DEFAULT_MAX_CONNECTION_IDLE,
                   max_connections: int | None = None,
                   max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION,
                   ) -> list[tuple[str, int | str]]:
    """SERVER_OPTIONS with requests capped at ``max_request_bytes``, the handshake
    timeout and idle limit, at most ``max_connections`` open connections (None: no
    limit beyond the process's descriptors) and ``max_streams_per_connection`` calls open
    on each (0: gRPC's default, unbounded)."""
    opts = [(k, max_request_bytes if k == "grpc.max_receive_message_length" else v)
            for k, v in SERVER_OPTIONS]
    opts += [("grpc.server_handshake_timeout_ms", int(handshake_timeout * 1000)),
             ("grpc.max_connection_idle_ms", int(max_connection_idle * 1000))]
    if max_connections is not None:
        opts.append(("grpc.max_allowed_incoming_connections", max_connections))
    if max_streams_per_connection > 0:
        opts.append(("grpc.max_concurrent_streams", max_streams_per_connection))
    return opts


def open_channel(target: str, credentials: Credentials) -> grpc.aio.Channel:
    """A TLS channel to ``target`` ("host:port") presenting ``credentials``."""
    creds, extra = channel_credentials(target, credentials)
    return grpc.aio.secure_channel(target, creds, options=[*CHANNEL_OPTIONS, *extra])


def add_secure_port(server: grpc.aio.Server, address: str,
                    credentials: grpc.ServerCredentials, what: str = "server") -> int:
    """Bind ``address`` with TLS ``credentials``; OSError naming ``what`` and the address
    when it cannot (in use, not an address of this machine)."""
    try:
        bound = server.add_secure_port(address, credentials)
    except RuntimeError as e:
        raise OSError(f"{what} cannot listen on {address}: {e}") from None
    if bound == 0:
        raise OSError(f"{what} cannot listen on {address} (address in use?)")
    return bound

