// The official TypeScript SDK client connecting to a protected server with nothing but its
// URL: it must find its way from the 401 on its own (protected resource metadata ->
// authorization server metadata -> dynamic client registration -> authorization code with
// PKCE and the resource indicator -> token), then use the server. The test plays the
// user's browser headlessly: it follows the authorization server's redirects (login and
// consent are automatic there) up to the redirect URI and hands the code to the SDK.
//
// Usage: node oauth-client.mjs <url> <streamable|sse> [--cimd <client metadata URL>] [--refresh]
//   --cimd: identify by this client metadata document URL (used when the authorization
//     server advertises support) instead of registering.
//   --refresh: register for refresh tokens too.
// When the authorization server shows a consent page (a form), the test "clicks" Allow: it
// posts the form as a browser would, from the page's origin.
// Prints one JSON object: the requests the SDK made, the claims of the token it obtained,
// what the redirect URI received (state, iss), and what the server answered.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [url, kind, ...flags] = process.argv.slice(2);
const flag = (name) => { const i = flags.indexOf(name); return i < 0 ? undefined : (flags[i + 1] ?? true); };
const CIMD = flag("--cimd");
const REFRESH = flag("--refresh") !== undefined;
const REDIRECT = "http://127.0.0.1:33419/callback";
let expectedState;
let callback;

const requests = [];
const loggingFetch = async (input, init) => {
  const res = await fetch(input, init);
  const target = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  requests.push({
    method: init?.method ?? "GET",
    url: target.origin + target.pathname,
    status: res.status,
    wwwAuthenticate: res.headers.get("www-authenticate") ?? undefined,
  });
  return res;
};

async function followToRedirectUri(authorizationUrl) {
  const jar = new Map();
  let next = authorizationUrl.toString();
  for (let hop = 0; hop < 12; hop++) {
    if (next.startsWith(REDIRECT)) {
      const u = new URL(next);
      if (u.searchParams.get("error")) throw new Error(`authorization error: ${u.search}`);
      callback = { state: u.searchParams.get("state"), iss: u.searchParams.get("iss") };
      return u.searchParams.get("code");
    }
    let res = await fetch(next, {
      redirect: "manual",
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") },
    });
    if (res.status === 200 && (res.headers.get("content-type") ?? "").startsWith("text/html")) {
      // A consent page: submit its form with decision=allow, as a browser would.
      const html = await res.text();
      const form = html.match(/<form[^>]*action="([^"]*)"[\s\S]*?<\/form>/);
      if (!form) throw new Error(`a page without a form at ${next}: ${html.slice(0, 300)}`);
      const body = new URLSearchParams();
      for (const m of form[0].matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]*)"[^>]*value="([^"]*)"/g)) body.append(m[1], m[2]);
      body.append("decision", "allow");
      const action = new URL(form[1].replaceAll("&#38;", "&").replaceAll("&amp;", "&"), next);
      res = await fetch(action, {
        method: "POST",
        redirect: "manual",
        body,
        headers: {
          cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; "),
          origin: action.origin,
          "sec-fetch-site": "same-origin",
          "content-type": "application/x-www-form-urlencoded",
        },
      });
      next = action.toString();
    }
    for (const c of res.headers.getSetCookie()) {
      const kv = c.split(";")[0];
      const i = kv.indexOf("=");
      const [name, val] = [kv.slice(0, i), kv.slice(i + 1)];
      if (!val || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
      else jar.set(name, val);
    }
    const loc = res.headers.get("location");
    if (!loc) throw new Error(`no redirect from ${next}: ${res.status} ${await res.text()}`);
    next = new URL(loc, next).toString();
  }
  throw new Error("too many redirects");
}

let code;
let authorizationUrl;
const provider = {
  clientMetadataUrl: CIMD,
  client: undefined,
  tok: undefined,
  verifier: undefined,
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      client_name: "mcp-warden oauth test",
      redirect_uris: [REDIRECT],
      grant_types: REFRESH ? ["authorization_code", "refresh_token"] : ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  state() { return (expectedState = crypto.randomUUID()); },
  clientInformation() { return this.client; },
  saveClientInformation(info) { this.client = info; },
  tokens() { return this.tok; },
  saveTokens(t) { this.tok = t; },
  saveCodeVerifier(v) { this.verifier = v; },
  codeVerifier() { return this.verifier; },
  async redirectToAuthorization(u) {
    authorizationUrl = u;
    code = await followToRedirectUri(u);
  },
};

const newTransport = () =>
  kind === "sse"
    ? new SSEClientTransport(new URL(url), { authProvider: provider, fetch: loggingFetch })
    : new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: loggingFetch });

const connect = async () => {
  const client = new Client({ name: "oauth-test", version: "1.0.0" });
  await client.connect(newTransport());
  return client;
};

let client;
let firstAttempt = "connected";
try {
  client = await connect();
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  firstAttempt = "unauthorized";
  await newTransport().finishAuth(code);
  client = await connect();
}

const tools = (await client.listTools()).tools.map((t) => t.name);
const echo = await client.callTool({ name: "echo", arguments: { text: "through oauth", message: "through oauth" } });
await client.close();

const claims = provider.tok?.access_token?.split(".").length === 3
  ? JSON.parse(Buffer.from(provider.tok.access_token.split(".")[1], "base64url").toString())
  : null;
const authorize = authorizationUrl ? Object.fromEntries(new URL(authorizationUrl).searchParams) : null;
console.log(JSON.stringify({
  firstAttempt,
  requests,
  registeredClient: Boolean(provider.client?.client_id),
  callback: callback && { ...callback, expectedState },
  refreshToken: Boolean(provider.tok?.refresh_token),
  authorize: authorize && { resource: authorize.resource, scope: authorize.scope, code_challenge_method: authorize.code_challenge_method },
  claims,
  tools,
  echo: echo.content?.find((c) => c.type === "text")?.text,
}));
process.exit(0);
