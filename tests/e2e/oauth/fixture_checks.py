"""Proves the fixture's checks are real, without any MCP SDK client: a negative control that
does not depend on the SDKs checking `resource` themselves.

    fixture_checks.py SIDECAR_URL --fixture FIXTURE_JSON

By hand (httpx) against the authorization server: /authorize without `resource` is refused
(invalid_target); /token refuses a wrong PKCE verifier, a reused code and a resource other
than the authorized one. Then tokens obtained for three resources call `initialize` through
the sidecar: the sidecar's URL and the gateway's own URL are accepted, a resource the gateway
does not accept (the naive forwarder's URL) gets 401 invalid_token.

Prints PASS/FAIL lines prefixed "fixture:"; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT_URI = "http://127.0.0.1/oauth/callback"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "oauth-e2e fixture checks", "version": "1"},
    },
}

results: list[bool] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} fixture: {what}{': ' + detail if detail and not ok else ''}")
    return ok


class Flow:
    """One public client doing the authorization code flow by hand."""

    def __init__(self, http: httpx.Client, authorization_server: str) -> None:
        self.http = http
        self.origin = authorization_server
        answer = http.post(
            f"{self.origin}/register",
            json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
        )
        answer.raise_for_status()
        self.client_id = answer.json()["client_id"]

    def authorize(self, resource: str | None, verifier: str) -> dict[str, list[str]]:
        """The query of the redirect /authorize answers with (`code` or `error`)."""
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "state": "s",
            "scope": "mcp:tools",
        }
        if resource is not None:
            params["resource"] = resource
        answer = self.http.get(f"{self.origin}/authorize", params=params)
        if answer.status_code != 302:
            raise RuntimeError(f"authorize answered {answer.status_code}: {answer.text}")
        return parse_qs(urlsplit(answer.headers["location"]).query)

    def exchange(self, code: str, verifier: str, resource: str | None) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        if resource is not None:
            form["resource"] = resource
        return self.http.post(f"{self.origin}/token", data=form)

    def token_for(self, resource: str) -> str:
        verifier = secrets.token_urlsafe(48)
        code = self.authorize(resource, verifier)["code"][0]
        answer = self.exchange(code, verifier, resource)
        answer.raise_for_status()
        return answer.json()["access_token"]


def error_of(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("error"))
    except ValueError:
        return f"HTTP {answer.status_code} {answer.text[:200]}"


def initialize(http: httpx.Client, url: str, token: str) -> httpx.Response:
    return http.post(
        url,
        json=INITIALIZE,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sidecar_url")
    parser.add_argument("--fixture", type=Path, required=True)
    args = parser.parse_args()
    fixture = json.loads(args.fixture.read_text())

    with httpx.Client(timeout=20, follow_redirects=False) as http:
        flow = Flow(http, fixture["authorization_server"])
        sidecar = args.sidecar_url

        refused = flow.authorize(None, secrets.token_urlsafe(48))
        check(
            refused.get("error") == ["invalid_target"],
            "/authorize without a resource (RFC 8707) is refused with invalid_target",
            str(refused),
        )

        verifier = secrets.token_urlsafe(48)
        code = flow.authorize(sidecar, verifier)["code"][0]
        wrong = flow.exchange(code, secrets.token_urlsafe(48), sidecar)
        check(
            wrong.status_code == 400 and error_of(wrong) == "invalid_grant",
            "/token refuses a wrong PKCE code_verifier (invalid_grant)",
            error_of(wrong),
        )

        verifier = secrets.token_urlsafe(48)
        code = flow.authorize(sidecar, verifier)["code"][0]
        other = flow.exchange(code, verifier, fixture["naive_url"])
        check(
            other.status_code == 400 and error_of(other) == "invalid_target",
            "/token refuses a resource other than the authorized one (invalid_target)",
            error_of(other),
        )
        reused = flow.exchange(code, verifier, sidecar)
        check(
            reused.status_code == 400 and error_of(reused) == "invalid_grant",
            "an authorization code is good for one /token request only",
            error_of(reused),
        )

        for resource, accepted in [
            (sidecar, True),
            (fixture["gateway_url"], True),
            (fixture["naive_url"], False),
        ]:
            answer = initialize(http, sidecar, flow.token_for(resource))
            challenge = answer.headers.get("www-authenticate", "")
            if accepted:
                check(
                    answer.status_code == 200,
                    f"a token for {resource} is accepted (initialize through the sidecar)",
                    f"HTTP {answer.status_code} {challenge} {answer.text[:200]}",
                )
            else:
                check(
                    answer.status_code == 401 and 'error="invalid_token"' in challenge,
                    f"a token for {resource} (not an accepted resource) gets 401 invalid_token",
                    f"HTTP {answer.status_code} {challenge}",
                )
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
