"""The Python mcp SDK client running the MCP OAuth flow against one URL, then calling the tool.

    python_client.py URL --fixture FIXTURE_JSON --expect ok|resource-mismatch [--deadline S]

Uses `mcp.client.auth.OAuthClientProvider` (in-memory TokenStorage; the redirect handler
GETs the authorization URL itself, without following the redirect, and takes the code and
state from its Location) on an httpx client handed to `streamable_http_client`.

--expect ok: initialize, list_tools shows DemoTarget___whoami, call_tool returns the
fixture's user and the resource the token was issued for, which must be URL itself; the
client must never have looked up the gateway's name (everything it learned named URL).
--expect resource-mismatch: the flow must stop with the SDK's RFC 9728 check ("Protected
resource ... does not match expected ...") before any token is issued.

Prints PASS/FAIL lines prefixed "python:"; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from loopback_guard import LoopbackGuard

TOOL = "DemoTarget___whoami"
SUBJECT = "e2e-user"
# Registered, never dialed: the redirect handler reads the code from the Location header.
REDIRECT_URI = "http://127.0.0.1/oauth/callback"
MISMATCH = "does not match"

results: list[bool] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} python: {what}{': ' + detail if detail and not ok else ''}")
    return ok


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Browser:
    """Plays the user agent: the authorization server approves at once, so one GET gives
    the redirect to REDIRECT_URI with the code."""

    def __init__(self) -> None:
        self.code: str | None = None
        self.state: str | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as http:
            answer = await http.get(authorization_url)
        location = answer.headers.get("location", "")
        if answer.status_code != 302 or not location.startswith(REDIRECT_URI):
            raise RuntimeError(f"authorize answered {answer.status_code} {location or answer.text}")
        query = parse_qs(urlsplit(location).query)
        if "code" not in query:
            raise RuntimeError(f"authorize refused: {query}")
        self.code = query["code"][0]
        self.state = query.get("state", [None])[0]

    async def callback(self) -> tuple[str, str | None]:
        if self.code is None:
            raise RuntimeError("no authorization code was captured")
        return self.code, self.state


def describe(exc: BaseException) -> str:
    """Every message in an exception (groups and causes included), for the mismatch check."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    text = f"{type(exc).__name__}: {exc}"
    inner = exc.__cause__ or exc.__context__
    return f"{text} <- {describe(inner)}" if inner is not None else text


async def run_session(
    url: str, provider: OAuthClientProvider, ca_file: str
) -> tuple[list[str], str]:
    verify = ssl.create_default_context(cafile=ca_file)
    timeout = httpx.Timeout(30, read=60)
    async with httpx.AsyncClient(auth=provider, verify=verify, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = [t.name for t in (await session.list_tools()).tools]
                result = await session.call_tool(TOOL, {})
                if result.isError:
                    raise RuntimeError(f"call_tool answered an error: {result.content}")
                return tools, result.content[0].text  # type: ignore[union-attr]


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--fixture", type=Path, required=True)
    parser.add_argument("--expect", choices=["ok", "resource-mismatch"], required=True)
    parser.add_argument("--deadline", type=float, default=60)
    args = parser.parse_args()
    fixture = json.loads(args.fixture.read_text())
    guard = LoopbackGuard(fixture["gateway_host"])
    guard.install()
    print(f"python: mcp {version('mcp')}, httpx {version('httpx')}, against {args.url}")

    storage, browser = MemoryStorage(), Browser()
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="oauth-e2e python client",
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
        timeout=args.deadline,
    )
    error: BaseException | None = None
    tools: list[str] = []
    text = ""
    try:
        with anyio.fail_after(args.deadline):
            tools, text = await run_session(args.url, provider, fixture["ca_file"])
    except Exception as e:  # noqa: BLE001 - every failure is reported below
        error = e

    if args.expect == "ok":
        if not check(
            error is None,
            "OAuth flow, initialize, list_tools, call_tool",
            describe(error) if error else "",
        ):
            return 1
        check(TOOL in tools, f"list_tools shows {TOOL}", f"got {tools}")
        who = json.loads(text)
        check(who.get("sub") == SUBJECT, f"{TOOL} answers the token's subject {SUBJECT}", text)
        check(
            who.get("resource") == args.url,
            "the token was issued for the URL the client connected to",
            f"token resource {who.get('resource')}",
        )
        check(
            guard.gateway_lookups == 0,
            "the client never needed the gateway's name (everything named the sidecar)",
            f"{guard.gateway_lookups} lookups of {guard.gateway_host}",
        )
    else:
        detail = describe(error) if error else f"the flow succeeded: tools {tools}, whoami {text}"
        check(
            error is not None and MISMATCH in detail,
            "the flow stops on the protected resource's `resource` not matching the URL",
            detail,
        )
        if error is not None:
            print(f"python: the SDK said: {detail}")
        check(storage.tokens is None, "no token was issued", "the client holds a token")
    check(not guard.refused, "only loopback was dialed", f"refused lookups: {guard.refused}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
