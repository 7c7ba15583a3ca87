"""An API client that authenticates with a bearer token on the supervisor port."""

from __future__ import annotations

from control.client.channel import open_channel
from control.client.client import ApiClient
from control.client.tls import Credentials
from tests.conftest import Cluster


def token_client(c: Cluster, token: str, timeout: float = 3) -> ApiClient:
    creds = Credentials(ca_pem=c.credentials.ca_pem, token=token)
    return ApiClient(open_channel(c.plane.supervisor_address, creds),
                     c.plane.supervisor_address, timeout=timeout)
