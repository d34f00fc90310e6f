"""The official Python MCP SDK client connecting to a protected server with nothing but its URL.

Its OAuthClientProvider must find its way from the 401 on its own (protected resource
metadata -> authorization server metadata, with the issuer checked -> dynamic client
registration -> authorization code with PKCE, state and the resource indicator -> token).
The test plays the user's browser headlessly: it follows the authorization server's
redirects (login and consent are automatic there) up to the redirect URI.

Usage: python oauth_client.py <url> <streamable|sse>
Prints one JSON object: the requests the SDK made, the authorization request, the claims of
the token it obtained, and what the server answered.
"""

import asyncio
import base64
import json
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT = "http://127.0.0.1:33420/callback"


class Memory:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def run(url: str, kind: str) -> dict:
    requests: list[dict] = []
    authorize: dict = {}
    result: dict = {}

    async def log(response: httpx2.Response) -> None:
        u = response.request.url
        requests.append(
            {"method": response.request.method, "url": f"{u.scheme}://{u.netloc.decode()}{u.path}", "status": response.status_code}
        )

    async def redirect_handler(authorization_url: str) -> None:
        params = parse_qs(urlparse(authorization_url).query)
        authorize.update({k: v[0] for k, v in params.items() if k in ("resource", "scope", "code_challenge_method")})
        async with httpx2.AsyncClient(follow_redirects=False) as browser:
            nxt = authorization_url
            for _ in range(12):
                if nxt.startswith(REDIRECT):
                    q = parse_qs(urlparse(nxt).query)
                    if "error" in q:
                        raise RuntimeError(f"authorization error: {q}")
                    result.update(code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])
                    return
                r = await browser.get(nxt)
                nxt = urljoin(nxt, r.headers["location"])
        raise RuntimeError("too many redirects")

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(**result)

    storage = Memory()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="mcp-warden python oauth test",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    def factory(headers=None, timeout=None, auth=None):
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30, read=300),
            auth=auth,
            event_hooks={"response": [log]},
        )

    if kind == "sse":
        from mcp.client.sse import sse_client

        transport = sse_client(url, auth=provider, httpx_client_factory=factory)
    else:
        from mcp.client.streamable_http import streamable_http_client

        transport = streamable_http_client(url, http_client=factory(auth=provider))

    out: dict = {}
    async with Client(transport, read_timeout_seconds=30) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        r = await client.call_tool("echo", {"text": "through oauth"})
        out["echo"] = r.content[0].text
    token = storage.tokens.access_token if storage.tokens else ""
    parts = token.split(".")
    out["claims"] = json.loads(base64.urlsafe_b64decode(parts[1] + "==")) if len(parts) == 3 else None
    out["requests"] = requests
    out["authorize"] = authorize
    out["registeredClient"] = storage.client is not None
    return out


def main() -> None:
    url, kind = sys.argv[1:3]
    print(json.dumps(asyncio.run(run(url, kind))))


if __name__ == "__main__":
    main()
