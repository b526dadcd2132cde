"""The ingress's HTTP client to providers: one pooled ``aiohttp.ClientSession``.

A gateway's own CPU per call is what it adds to every call's latency. httpx's pool (httpcore
over anyio streams) was most of the gateway's CPU per proxied call, and with aiohttp's pool
under httpx's client API, httpx's request and response objects were still a large share
(BENCHMARKS.md, ingress overhead). So the forwarding code speaks to
aiohttp directly, through the two small types here: ``ProviderClient.post`` and the
``ProviderResponse`` it returns. aiohttp's many exceptions become the four failures the
forwarding code tells apart (``UpstreamError``'s subclasses): whether the request may have
reached the provider decides whether the call is recorded.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp.helpers import ProxyInfo, proxies_from_env
from yarl import URL


class UpstreamError(Exception):
    """The provider could not be reached, or its answer was lost on the way."""


class ConnectTimedOut(UpstreamError):
    """No connection within the connect timeout (a pooled one included): nothing was sent."""


class Unreachable(UpstreamError):
    """The connection failed: nothing was sent."""


class ReadTimedOut(UpstreamError):
    """The request was sent and the provider did not answer in time."""


class ConnectionLost(UpstreamError):
    """The request was sent and the connection broke before the answer ended."""


@contextmanager
def _mapped_errors(*, sent: bool) -> Iterator[None]:
    """aiohttp's failures as ``UpstreamError``s. ``sent``: the request already reached the
    provider, so a lost connection loses an answer (recorded) rather than a request
    (nothing to record)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as error:
        # aiohttp's connect timeout covers waiting for a pooled connection as well.
        raise ConnectTimedOut(str(error) or "connect timeout") from error
    except (aiohttp.SocketTimeoutError, TimeoutError) as error:
        raise ReadTimedOut(str(error) or "read timeout") from error
    except aiohttp.ClientConnectorError as error:
        raise Unreachable(str(error)) from error
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientResponseError,
        aiohttp.ClientPayloadError,
        aiohttp.ClientOSError,
    ) as error:
        raise ConnectionLost(str(error) or type(error).__name__) from error
    except aiohttp.ClientError as error:
        if sent:
            raise ConnectionLost(str(error) or type(error).__name__) from error
        raise Unreachable(str(error) or type(error).__name__) from error


class ProviderResponse:
    """A provider's answer: status and headers at once, the body read whole or passed on
    chunk by chunk as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response
        self.status: int = response.status
        self.raw_headers: tuple[tuple[bytes, bytes], ...] = response.raw_headers

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    async def read(self) -> bytes:
        with _mapped_errors(sent=True):
            return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body from where the last reader stopped: a stream abandoned by one reader
        can be read to its end by another."""
        with _mapped_errors(sent=True):
            async for chunk in self._response.content.iter_any():
                yield chunk

    def close(self) -> None:
        # Back to the pool when the body was read to its end; closed otherwise, so an
        # abandoned stream's unread bytes never reach the next request.
        self._response.release()


class ProviderClient:
    """One pooled session for every provider: connections are kept alive, which is most of
    the latency a gateway can save. Build it inside the running event loop (the app's
    lifespan)."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float):
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=keepalive_expiry
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            # With trust_env, aiohttp reads the proxy variables and ~/.netrc again for every
            # request, in a worker thread: a third of the gateway's CPU per request. They are
            # read once here instead (a changed proxy variable needs a restart, as for every
            # other setting). Providers authenticate by key headers, never by .netrc.
            trust_env=False,
        )
        self._proxies = proxies_from_env()
        self._environment = urllib.request.getproxies()  # NO_PROXY among them, as "no"

    def _proxy_for(self, url: URL) -> ProxyInfo | None:
        """The proxy the environment named at start-up for ``url`` (``HTTPS_PROXY``,
        ``NO_PROXY`` …)."""
        proxy = self._proxies.get(url.scheme)
        if proxy is None:
            return None
        # The NO_PROXY matcher urllib.request.proxy_bypass uses, given the variables read
        # at start-up (typeshed leaves it out, though it is public in the module).
        bypass = urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
            url.host, self._environment
        )
        return None if bypass else proxy

    async def post(
        self, url: URL, headers: dict[str, str], content: bytes, timeout: aiohttp.ClientTimeout
    ) -> ProviderResponse:
        """POST ``content``; the answer once its status line and headers are in. Redirects
        are not followed: they would resend a prompt (and a key) somewhere the
        configuration never named."""
        proxy = self._proxy_for(url)
        with _mapped_errors(sent=False):
            response = await self._session.post(
                url,
                data=content,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxy=None if proxy is None else proxy.proxy,
                proxy_auth=None if proxy is None else proxy.proxy_auth,
            )
        return ProviderResponse(response)

    async def aclose(self) -> None:
        await self._session.close()


def provider_timeout(*, connect: float, pool: float, read: float) -> aiohttp.ClientTimeout:
    """``connect``: to open a connection; ``pool``: to wait for a free pooled one (aiohttp
    counts both in one limit); ``read``: between two reads of the answer."""
    return aiohttp.ClientTimeout(
        total=None, connect=connect + pool, sock_connect=connect, sock_read=read
    )
