"""The HTTP exchange under the OpenAI-compatible client: one POST whose status, headers and body
pieces the client reads, and one exception type for everything the network can do wrong.

aiohttp by default: its connector hands a pooled connection out in constant time, so the CPU
one call costs stays flat as concurrency grows. httpx (httpcore) walks every pooled connection
on every request, which made a call at 100 concurrent calls cost about four times a call at 10
(``bench/llm_client.py`` measures both). A caller that already shares an ``httpx.AsyncClient``
may still hand it in; it is used as given and left open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import httpx

if TYPE_CHECKING:
    import aiohttp

# Keep every connection alive: under load, closing all but a few means a new TCP (and TLS)
# handshake for most calls.
MAX_CONNECTIONS = 100


class TransportError(Exception):
    """The exchange failed below HTTP. ``timed_out``: a connect or read deadline passed;
    ``retryable``: the connection broke or could not be made (another attempt may work),
    as opposed to a request that can never be sent (a malformed URL)."""

    def __init__(self, reason: str, *, timed_out: bool = False, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.retryable = retryable


class Reply(Protocol):
    """A response whose body has not been read yet."""

    status: int
    headers: Mapping[str, str]  # names case-insensitive

    def pieces(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        ...


class Transport(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[Reply]: ...

    async def aclose(self) -> None: ...


class _AiohttpReply:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self._response = response

    def pieces(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()


http_logger = logging.getLogger("mgx_agent.llm.http")


class AiohttpTransport:
    """One ``aiohttp.ClientSession``, created on first use (so building a client never needs a
    running event loop, and importing the team never loads aiohttp) and shared by every call."""

    def __init__(self, *, read_timeout_seconds: float, connect_timeout_seconds: float) -> None:
        self._read_timeout = read_timeout_seconds
        self._connect_timeout = connect_timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        # A session belongs to the loop it was made in: a client reused under a new loop (one
        # asyncio.run after another) gets a new one instead of failing every call.
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
                ),
                # The client names itself in the headers it sends.
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[Reply]:
        import aiohttp

        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                # One line per request at DEBUG (as httpx logs its own), never the credentials.
                http_logger.debug("POST %s %s", response.url.with_user(None), response.status)
                yield _AiohttpReply(response)
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise TransportError(_reason(exc), timed_out=True) from exc
        except aiohttp.InvalidURL as exc:
            raise TransportError(f"invalid URL {exc}", retryable=False) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise TransportError(_reason(exc)) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(_reason(exc), retryable=False) from exc

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None


class _HttpxReply:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self._response = response

    def pieces(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()


class HttpxTransport:
    """A caller's ``httpx.AsyncClient``, used as given and never closed here."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[Reply]:
        try:
            async with self._client.stream("POST", url, content=body, headers=headers) as response:
                yield _HttpxReply(response)
        except httpx.TimeoutException as exc:
            raise TransportError(_reason(exc), timed_out=True) from exc
        except httpx.TransportError as exc:
            raise TransportError(_reason(exc)) from exc
        except httpx.HTTPError as exc:
            raise TransportError(_reason(exc), retryable=False) from exc

    async def aclose(self) -> None:
        return None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
