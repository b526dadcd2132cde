"""The connection pool under the ingress's ``httpx.AsyncClient``: aiohttp's.

httpx's own pool (httpcore over anyio streams) cost the gateway about 1.4 ms of CPU per
proxied call, most of its own overhead: it walks every pooled connection on each request
and wraps each socket operation in several layers. aiohttp's pool does the same work in a
fraction of that (measured with ``bench/ingress_overhead.py``). The forwarding code keeps
speaking httpx: this transport maps aiohttp's answers and failures onto httpx's, so a
timeout is still an ``httpx.ReadTimeout`` and a refused connection an ``httpx.ConnectError``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from aiohttp.helpers import ProxyInfo, proxies_from_env


@contextmanager
def _mapped_errors(request: httpx.Request, *, connected: bool) -> Iterator[None]:
    """aiohttp's failures as the httpx exceptions the forwarding code handles.
    ``connected``: the request already reached the provider, so a lost connection is a
    read error (recorded) rather than a failure to connect (nothing to record)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as error:
        # aiohttp's connect timeout covers waiting for a pooled connection as well.
        raise httpx.ConnectTimeout(str(error) or "connect timeout", request=request) from error
    except (aiohttp.SocketTimeoutError, TimeoutError) as error:
        raise httpx.ReadTimeout(str(error) or "read timeout", request=request) from error
    except aiohttp.ClientConnectorError as error:
        raise httpx.ConnectError(str(error), request=request) from error
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as error:
        raise httpx.RemoteProtocolError(str(error), request=request) from error
    except (aiohttp.ClientPayloadError, aiohttp.ClientOSError) as error:
        raise httpx.ReadError(str(error), request=request) from error
    except aiohttp.ClientError as error:
        if connected:
            raise httpx.ReadError(str(error), request=request) from error
        raise httpx.ConnectError(str(error), request=request) from error


class _ResponseBody(httpx.AsyncByteStream):
    """The provider's body, passed on chunk by chunk as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request):
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._request, connected=True):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool when the body was read to its end; closed otherwise, so an
        # abandoned stream's unread bytes never reach the next request.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one ``aiohttp.ClientSession``. Build it inside the running
    event loop (the app's lifespan)."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float):
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=keepalive_expiry
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # httpx decodes a compressed body itself, as it did over its own pool.
            auto_decompress=False,
            # Exactly the headers httpx built: no user agent or encodings of aiohttp's.
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None),
            # With trust_env, aiohttp reads the proxy variables and ~/.netrc again for every
            # request, in a worker thread: a third of the gateway's CPU per request. They are
            # read once here instead (a changed proxy variable needs a restart, as for every
            # other setting). Providers authenticate by key headers, never by .netrc.
            trust_env=False,
        )
        self._proxies = proxies_from_env()
        self._environment = urllib.request.getproxies()  # NO_PROXY among them, as "no"

    def _proxy_for(self, url: httpx.URL) -> ProxyInfo | None:
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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        connect, pool = timeouts.get("connect"), timeouts.get("pool")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=timeouts.get("read"),
        )
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
        ]
        proxy = self._proxy_for(request.url)
        with _mapped_errors(request, connected=False):
            response = await self._session.request(
                request.method,
                str(request.url),
                data=request.content,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxy=None if proxy is None else proxy.proxy,
                proxy_auth=None if proxy is None else proxy.proxy_auth,
            )
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_ResponseBody(response, request),
        )

    async def aclose(self) -> None:
        await self._session.close()
