"""The official Python MCP SDK client connecting to a protected server with nothing but its URL.

Its OAuthClientProvider must find its way from the 401 on its own (protected resource
metadata -> authorization server metadata, with the issuer checked -> dynamic client
registration -> authorization code with PKCE, state and the resource indicator -> token).
The test plays the user's browser headlessly: it follows the authorization server's
redirects (login and consent are automatic there) up to the redirect URI.

Usage: python oauth_client.py <url> <streamable|sse> [--cimd <client metadata URL>] [--refresh]
  --cimd: identify by this client metadata document URL (used when the authorization
    server advertises support) instead of registering.
  --refresh: register for refresh tokens too.
When the authorization server shows a consent page (a form), the test "clicks" Allow: it
posts the form as a browser would, from the page's origin.
Prints one JSON object: the requests the SDK made, the authorization request, the claims of
the token it obtained, and what the server answered.
"""

import asyncio
import base64
import html
import json
import re
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


async def run(url: str, kind: str, cimd: str | None, refresh: bool) -> dict:
    requests: list[dict] = []
    authorize: dict = {}
    result: dict = {}
    callback: dict = {}

    async def log(response: httpx2.Response) -> None:
        u = response.request.url
        requests.append(
            {"method": response.request.method, "url": f"{u.scheme}://{u.netloc.decode()}{u.path}", "status": response.status_code}
        )

    async def redirect_handler(authorization_url: str) -> None:
        params = parse_qs(urlparse(authorization_url).query)
        authorize.update({k: v[0] for k, v in params.items() if k in ("resource", "scope", "code_challenge_method")})
        # One client: it keeps the cookies a browser would.
        async with httpx2.AsyncClient(follow_redirects=False) as browser:
            nxt = authorization_url
            for _ in range(12):
                if nxt.startswith(REDIRECT):
                    q = parse_qs(urlparse(nxt).query)
                    if "error" in q:
                        raise RuntimeError(f"authorization error: {q}")
                    result.update(code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])
                    callback.update(state=result["state"], iss=result["iss"])
                    return
                r = await browser.get(nxt)
                if r.status_code == 200 and r.headers.get("content-type", "").startswith("text/html"):
                    # A consent page: submit its form with decision=allow.
                    form = re.search(r'<form[^>]*action="([^"]*)"[\s\S]*?</form>', r.text)
                    if not form:
                        raise RuntimeError(f"a page without a form at {nxt}")
                    fields = re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]*)"[^>]*value="([^"]*)"', form.group(0))
                    data = {k: html.unescape(v) for k, v in fields}
                    data["decision"] = "allow"
                    action = urljoin(nxt, html.unescape(form.group(1)))
                    origin = "{0.scheme}://{0.netloc}".format(urlparse(action))
                    r = await browser.post(action, data=data, headers={"origin": origin, "sec-fetch-site": "same-origin"})
                    nxt = action
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
            grant_types=["authorization_code", "refresh_token"] if refresh else ["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=cimd,
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
    out["registeredClient"] = storage.client is not None and not (storage.client.client_id or "").startswith("https://")
    out["callback"] = callback
    out["refreshToken"] = bool(storage.tokens and storage.tokens.refresh_token)
    return out


def main() -> None:
    url, kind = sys.argv[1:3]
    flags = sys.argv[3:]
    cimd = flags[flags.index("--cimd") + 1] if "--cimd" in flags else None
    print(json.dumps(asyncio.run(run(url, kind, cimd, "--refresh" in flags))))


if __name__ == "__main__":
    main()
