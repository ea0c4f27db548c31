"""A loopback stand-in for an AgentCore Gateway that authorizes each end user (CUSTOM_JWT),
as the MCP authorization spec describes it, plus a naive forwarder for the negative control.

Three servers in one process, all on 127.0.0.1:

- the authorization server (plain HTTP): RFC 8414 metadata, RFC 7591 dynamic client
  registration (public clients only), /authorize that approves at once for the one user
  and redirects with a code, /token with PKCE S256. Every code and token is bound to the
  `resource` the client sent (RFC 8707);
- the resource server (TLS, certificate for the gateway-like name GATEWAY_HOST): the mcp
  SDK's FastMCP with its auth support. It answers 401 with `resource_metadata` naming its
  own metadata URL, serves protected-resource metadata naming `https://GATEWAY_HOST:<port>/mcp`,
  and accepts a token only if it was issued for an accepted resource: its own URL and the
  aliases given with --accept-resource (the sidecar's URL, as an operator would list it in
  the gateway's allowed audiences). A token for any other resource gets 401;
- a naive forwarder (plain HTTP -> TLS): forwards every request to the resource server and
  every answer back, byte for byte, without rewriting anything.

When all three listen, the ports, URLs and the CA file go to <workdir>/fixture.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import logging
import secrets
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

GATEWAY_HOST = "gw-oauth-e2e.gateway.bedrock-agentcore.us-east-1.amazonaws.com"
SUBJECT = "e2e-user"  # the one end user; /authorize approves for them without asking
SCOPE = "mcp:tools"
TOOL = "DemoTarget___whoami"
CODE_LIFETIME = 60  # seconds
TOKEN_LIFETIME = 3600  # seconds

log = logging.getLogger("oauth-fixture")


# ---------------------------------------------------------------------------------------
# PKI: a CA and a leaf for GATEWAY_HOST


def write_pki(workdir: Path) -> tuple[Path, Path, Path]:
    """Writes ca.pem, gateway.pem and gateway.key; returns their paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauth-e2e test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GATEWAY_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(GATEWAY_HOST)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file, cert_file, key_file = (workdir / n for n in ("ca.pem", "gateway.pem", "gateway.key"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


# ---------------------------------------------------------------------------------------
# Authorization server


@dataclass
class Client:
    redirect_uris: list[str]


@dataclass
class Grant:
    """What a code or a token was issued for."""

    client_id: str
    resource: str
    scopes: list[str]
    expires_at: float
    redirect_uri: str = ""
    code_challenge: str = ""


class AuthorizationServer:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, Grant] = {}

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", self.metadata, methods=["GET"]),
                Route("/register", self.register, methods=["POST"]),
                Route("/authorize", self.authorize, methods=["GET"]),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def metadata(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.origin,
                "authorization_endpoint": f"{self.origin}/authorize",
                "token_endpoint": f"{self.origin}/token",
                "registration_endpoint": f"{self.origin}/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": [SCOPE],
            }
        )

    async def register(self, request: Request) -> Response:
        try:
            meta = await request.json()
        except ValueError:
            return oauth_error("invalid_client_metadata", "the body is not JSON")
        uris = meta.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            return oauth_error("invalid_redirect_uri", "redirect_uris must be a non-empty list")
        method = meta.get("token_endpoint_auth_method", "client_secret_basic")
        if method != "none":
            return oauth_error(
                "invalid_client_metadata",
                f"only public clients (token_endpoint_auth_method=none) are served, not {method}",
            )
        client_id = "client-" + secrets.token_hex(8)
        self.clients[client_id] = Client(redirect_uris=uris)
        log.info("registered %s (redirect_uris %s)", client_id, uris)
        return JSONResponse(
            {**meta, "client_id": client_id, "client_id_issued_at": int(time.time())},
            status_code=201,
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        if client is None:
            return oauth_error("invalid_client", "unknown client_id")
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            # Never redirect to an unregistered URI (RFC 6749 4.1.2.1).
            return oauth_error("invalid_request", "redirect_uri is not registered")

        def refuse(error: str, description: str) -> Response:
            log.warning("authorize refused: %s (%s)", error, description)
            params = {"error": error, "error_description": description, "iss": self.origin}
            if "state" in q:
                params["state"] = q["state"]
            return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

        if q.get("response_type") != "code":
            return refuse("unsupported_response_type", "response_type must be code")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return refuse("invalid_request", "PKCE with code_challenge_method=S256 is required")
        resource = q.get("resource")
        if not resource:
            return refuse("invalid_target", "the resource parameter (RFC 8707) is required")
        scopes = q.get("scope", SCOPE).split()
        if not set(scopes) <= {SCOPE}:
            return refuse("invalid_scope", f"only {SCOPE} is offered")
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(
            client_id=q["client_id"],
            resource=resource,
            scopes=scopes,
            expires_at=time.time() + CODE_LIFETIME,
            redirect_uri=redirect_uri,
            code_challenge=q["code_challenge"],
        )
        log.info("authorized %s for %s on resource %s", q["client_id"], SUBJECT, resource)
        params = {"code": code, "iss": self.origin}
        if "state" in q:
            params["state"] = q["state"]
        return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "authorization_code":
            return oauth_error("unsupported_grant_type", "only authorization_code")
        code = str(form.get("code", ""))
        grant = self.codes.pop(code, None)  # single use, whatever happens next
        if grant is None or grant.expires_at < time.time():
            return oauth_error("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant.client_id:
            return oauth_error("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            return oauth_error(
                "invalid_grant", "redirect_uri differs from the authorization request"
            )
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if not verifier or challenge.rstrip(b"=").decode() != grant.code_challenge:
            return oauth_error("invalid_grant", "PKCE verification failed")
        # RFC 8707 2.2: a resource at the token endpoint must be one the grant covers.
        resource = form.get("resource")
        if resource is not None and resource != grant.resource:
            return oauth_error("invalid_target", "resource differs from the authorization request")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Grant(
            client_id=grant.client_id,
            resource=grant.resource,
            scopes=grant.scopes,
            expires_at=time.time() + TOKEN_LIFETIME,
        )
        log.info("issued a token to %s for resource %s", grant.client_id, grant.resource)
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "scope": " ".join(grant.scopes),
            },
            headers={"Cache-Control": "no-store"},
        )


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    log.warning("%s: %s", error, description)
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


# ---------------------------------------------------------------------------------------
# Resource server


class AudienceCheckingVerifier:
    """Accepts a token only if the authorization server issued it, it has not expired, and
    its resource (audience) is one this gateway accepts."""

    def __init__(self, tokens: dict[str, Grant], accepted: set[str]) -> None:
        self.tokens = tokens
        self.accepted = accepted

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.tokens.get(token)
        if grant is None or grant.expires_at < time.time():
            log.warning("resource server: unknown or expired token")
            return None
        if grant.resource not in self.accepted:
            log.warning(
                "resource server: refused a token issued for resource %s (accepted: %s)",
                grant.resource,
                sorted(self.accepted),
            )
            return None
        return AccessToken(
            token=token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            expires_at=int(grant.expires_at),
            resource=grant.resource,
            subject=SUBJECT,
        )


def resource_server(
    port: int, as_origin: str, tokens: dict[str, Grant], aliases: list[str]
) -> Starlette:
    authority = f"{GATEWAY_HOST}:{port}"
    resource = f"https://{authority}/mcp"
    mcp = FastMCP(
        "oauth-e2e-gateway",
        token_verifier=AudienceCheckingVerifier(tokens, {resource, *aliases}),
        auth=AuthSettings(
            issuer_url=as_origin,
            resource_server_url=resource,
            required_scopes=[SCOPE],
            # The verifier checks the audience itself, against the aliases too.
            validate_token_resource=False,
        ),
        # Requests must name the gateway (the proxy and the naive forwarder both do).
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[authority],
            allowed_origins=[],
        ),
    )

    @mcp.tool(name=TOOL, description="Who the gateway thinks is calling (from the bearer token).")
    def whoami() -> str:
        token = get_access_token()
        if token is None:  # RequireAuthMiddleware lets no such request through
            raise RuntimeError("no access token in the request context")
        return json.dumps(
            {"sub": token.subject, "client_id": token.client_id, "resource": token.resource}
        )

    return mcp.streamable_http_app()


# ---------------------------------------------------------------------------------------
# Naive forwarder

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def naive_forwarder(gateway_port: int, ca_file: Path) -> Starlette:
    """Forwards http://127.0.0.1:<port>/<anything> to https://GATEWAY_HOST:<gateway_port>/<anything>
    (dialing 127.0.0.1, SNI and Host the gateway's) and the answer back, rewriting nothing."""
    upstream = httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{gateway_port}",
        verify=ssl.create_default_context(cafile=str(ca_file)),
        timeout=httpx.Timeout(30, read=300),
    )
    authority = f"{GATEWAY_HOST}:{gateway_port}"

    async def forward(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("host", authority))
        outgoing = upstream.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=headers,
            content=await request.body(),
            extensions={"sni_hostname": GATEWAY_HOST},
        )
        answer = await upstream.send(outgoing, stream=True)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            # uvicorn adds its own Date and Server.
            headers={
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in HOP_BY_HOP | {"date", "server"}
            },
            background=BackgroundTask(answer.aclose),
        )

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


# ---------------------------------------------------------------------------------------


def listen() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, sock.getsockname()[1]


class Quiet(uvicorn.Server):
    """Three servers share the process: SIGTERM from the runner ends it, uvicorn does not
    trap signals."""

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument(
        "--accept-resource",
        action="append",
        default=[],
        metavar="URL",
        help="another resource URL the gateway accepts tokens for (the sidecar's); repeatable",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )

    ca_file, cert_file, key_file = write_pki(args.workdir)
    as_sock, as_port = listen()
    gw_sock, gw_port = listen()
    naive_sock, naive_port = listen()
    as_origin = f"http://127.0.0.1:{as_port}"
    auth_server = AuthorizationServer(as_origin)

    def server(app: Starlette, **tls: str) -> Quiet:
        return Quiet(uvicorn.Config(app, log_level="info", lifespan="on", **tls))

    servers = [
        (server(auth_server.app()), as_sock),
        (
            server(
                resource_server(gw_port, as_origin, auth_server.tokens, args.accept_resource),
                ssl_certfile=str(cert_file),
                ssl_keyfile=str(key_file),
            ),
            gw_sock,
        ),
        (server(naive_forwarder(gw_port, ca_file)), naive_sock),
    ]
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in servers]
    for _ in range(300):
        if all(s.started for s, _ in servers) or any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    if not all(s.started for s, _ in servers):
        raise SystemExit("the fixture's servers did not start")

    state = {
        "authorization_server": as_origin,
        "gateway_host": GATEWAY_HOST,
        "gateway_port": gw_port,
        "gateway_url": f"https://{GATEWAY_HOST}:{gw_port}/mcp",
        "naive_url": f"http://127.0.0.1:{naive_port}/mcp",
        "accepted_resources": [f"https://{GATEWAY_HOST}:{gw_port}/mcp", *args.accept_resource],
        "ca_file": str(ca_file),
    }
    tmp = args.workdir / "fixture.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.rename(args.workdir / "fixture.json")
    log.info("ready: %s", json.dumps(state))
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
