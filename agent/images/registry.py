"""A client of the OCI distribution API: manifests and blobs, with auth (async, httpx).

Where a repository is fetched from: the registries given as mirrors of its domain
(``--registry-mirror docker.io=127.0.0.1:5000``), tried in order, stand in for that
domain, which is then never contacted (a mirror is how air-gapped nodes reach images);
otherwise the domain itself (Docker Hub's API host for ``docker.io``). HTTPS verified with
the system's CAs, plain HTTP only for hosts listed as insecure (or a mirror written with
``http://``).

Auth follows the registry's ``WWW-Authenticate`` challenge: ``Bearer`` -> fetch a token
for the repository's pull scope from the named realm (anonymously, or with the credential's
basic auth) and retry; ``Basic`` -> retry with the credential. Tokens are cached per
endpoint, scope and credential until they expire.

Concurrency: one :class:`RegistryClient` serves concurrent pulls; the token cache is a dict
only touched on the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from agent.images.auth import Credential
from agent.images.errors import DigestMismatch, NotFound, PullError, Unauthorized
from agent.images.manifest import ACCEPT
from agent.images.reference import DEFAULT_DOMAIN, Reference

DOCKER_HUB_API = "registry-1.docker.io"
MAX_MANIFEST_BYTES = 4 << 20
T = TypeVar("T")
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class RegistryConfig:
    """``--registry-mirror DOMAIN=HOST[,HOST]`` and ``--insecure-registry HOST``."""

    mirrors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    insecure: frozenset[str] = frozenset()

    def endpoints(self, domain: str) -> list[str]:
        """Base URLs (``scheme://host``) to fetch ``domain``'s repositories from."""
        hosts = list(self.mirrors.get(domain, ()))
        if not hosts:
            hosts = [DOCKER_HUB_API if domain == DEFAULT_DOMAIN else domain]
        out = []
        for host in hosts:
            if "://" in host:
                out.append(host.rstrip("/"))
            elif host in self.insecure:
                out.append(f"http://{host}")
            else:
                out.append(f"https://{host}")
        return out


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {realm, service, ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


@dataclass(frozen=True)
class Fetched:
    body: bytes
    media_type: str
    digest: str


class RegistryClient:
    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or RegistryConfig()
        self._clock = clock
        self._http = httpx.AsyncClient(
            verify=ssl.create_default_context(),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=True,
            headers={"User-Agent": "flotilla-agent"},
        )
        # (endpoint, scope, username) -> (authorization header, expiry)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch_manifest(
        self, ref: Reference, cred: Credential | None, obj: str | None = None
    ) -> Fetched:
        """The manifest (or index) for ``obj`` (default: the reference's digest or tag),
        checked against the digest when one was asked for."""
        want = obj or ref.object

        async def get(base: str) -> Fetched:
            resp = await self._get(base, ref, f"manifests/{want}", cred, {"Accept": ACCEPT})
            try:
                body = await _read_capped(resp, MAX_MANIFEST_BYTES, f"manifest {ref.name}:{want}")
            finally:
                await resp.aclose()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if want.startswith("sha256:") and digest != want:
                raise DigestMismatch(
                    f"manifest {ref.name}@{want}: the registry served content hashing to {digest}"
                )
            return Fetched(body, resp.headers.get("content-type", ""), digest)

        return await self._each_endpoint(ref, get)

    async def fetch_blob(
        self,
        ref: Reference,
        cred: Credential | None,
        digest: str,
        sink: Callable[[bytes], None],
    ) -> None:
        """Stream blob ``digest`` into ``sink``; the caller verifies the digest (the store's
        blob writer does)."""

        async def get(base: str) -> None:
            resp = await self._get(base, ref, f"blobs/{digest}", cred, {})
            try:
                async for chunk in resp.aiter_bytes(1 << 20):
                    sink(chunk)
            except httpx.HTTPError as e:
                raise _Started(
                    PullError(f"blob {digest} of {ref.name}: transfer failed: {_why(e)}")
                ) from e
            except PullError as e:
                raise _Started(e) from e
            finally:
                await resp.aclose()

        await self._each_endpoint(ref, get)

    async def _each_endpoint(self, ref: Reference, attempt: Callable[[str], Awaitable[T]]) -> T:
        """Try each endpoint of the reference's domain in turn; the error raised when all
        fail names every endpoint's failure, with the first one's class."""
        failures: list[PullError] = []
        for base in self.config.endpoints(ref.domain):
            try:
                return await attempt(base)
            except _Started as e:
                raise e.error from None
            except PullError as e:
                failures.append(e)
        assert failures
        if len(failures) == 1:
            raise failures[0]
        first = failures[0]
        raise type(first)("; ".join(str(f) for f in failures)) from first

    async def _get(
        self,
        base: str,
        ref: Reference,
        tail: str,
        cred: Credential | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        """A streamed GET of ``/v2/<repo>/<tail>`` with auth; a response with status 200,
        or a PullError saying what the registry answered."""
        url = f"{base}/v2/{ref.path}/{tail}"
        scope = f"repository:{ref.path}:pull"
        key = (base, scope, cred.username if cred else "")
        auth = self._cached_token(key)
        for round_ in range(2):
            send = dict(headers)
            if auth:
                send["Authorization"] = auth
            try:
                req = self._http.build_request("GET", url, headers=send)
                resp = await self._http.send(req, stream=True)
            except httpx.HTTPError as e:
                raise PullError(f"{_host(base)}: cannot reach the registry: {_why(e)}") from e
            if resp.status_code == 200:
                return resp
            body = (await resp.aread())[:300].decode("utf-8", "replace")
            await resp.aclose()
            what = f"{_host(base)}: GET {ref.path}/{tail}"
            if resp.status_code == 401 and round_ == 0:
                auth = await self._authorize(base, resp, scope, cred, key, what)
                continue
            if resp.status_code == 401 or resp.status_code == 403:
                who = f"as {cred.username!r}" if cred else "without credentials"
                raise Unauthorized(f"{what}: {resp.status_code} {who}: {_short(body)}")
            if resp.status_code == 404:
                raise NotFound(f"{what}: not found: {_short(body)}")
            raise PullError(f"{what}: HTTP {resp.status_code}: {_short(body)}")
        raise AssertionError("unreachable")

    def _cached_token(self, key: tuple[str, str, str]) -> str | None:
        hit = self._tokens.get(key)
        if hit and hit[1] > self._clock():
            return hit[0]
        return None

    async def _authorize(
        self,
        base: str,
        resp: httpx.Response,
        scope: str,
        cred: Credential | None,
        key: tuple[str, str, str],
        what: str,
    ) -> str:
        scheme, params = parse_challenge(resp.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if cred is None:
                raise Unauthorized(f"{what}: the registry wants credentials and none apply")
            return _basic(cred)
        if scheme != "bearer" or not params.get("realm"):
            raise Unauthorized(
                f"{what}: unsupported challenge {resp.headers.get('www-authenticate')!r}"
            )
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        token_headers = {"Authorization": _basic(cred)} if cred else {}
        try:
            token_resp = await self._http.get(params["realm"], params=query, headers=token_headers)
        except httpx.HTTPError as e:
            raise PullError(f"{what}: token service {params['realm']}: {_why(e)}") from e
        if token_resp.status_code in (401, 403):
            who = f"as {cred.username!r}" if cred else "anonymously"
            raise Unauthorized(f"{what}: token service refused {who}")
        if token_resp.status_code != 200:
            raise PullError(f"{what}: token service answered HTTP {token_resp.status_code}")
        try:
            doc = token_resp.json()
        except ValueError as e:
            raise PullError(f"{what}: token service answered no JSON") from e
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise PullError(f"{what}: token service answered no token")
        expires = doc.get("expires_in")
        ttl = float(expires) if isinstance(expires, (int, float)) and expires > 0 else 60.0
        header = f"Bearer {token}"
        # renew a little early so a token never expires between check and use
        self._tokens[key] = (header, self._clock() + max(ttl - 10.0, ttl / 2))
        return header


class _Started(Exception):
    """A blob transfer failed after bytes reached the sink: no other endpoint may retry it."""

    def __init__(self, error: PullError) -> None:
        super().__init__(str(error))
        self.error = error


def _basic(cred: Credential) -> str:
    raw = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _host(base: str) -> str:
    return base.split("://", 1)[-1]


def _why(e: Exception) -> str:
    return str(e) or type(e).__name__


def _short(body: str) -> str:
    return " ".join(body.split())[:200] or "(empty body)"


async def _read_capped(resp: httpx.Response, cap: int, what: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > cap:
            raise PullError(f"{what}: larger than {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)
