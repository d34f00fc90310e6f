// A real OAuth 2.1 / OpenID authorization server for the test suite: oidc-provider (npm,
// OpenID-certified) with a headless login/consent, started and stopped by the tests.
//
//   node authorization-server.mjs [--port 0] [--any-loopback-resource] [--opaque]
//        [--scopes "mcp:tools mcp:admin"] [--alg RS256|PS256|ES256|EdDSA] [--ttl 3600]
//
// --any-loopback-resource: any http://127.0.0.1|localhost:*/... resource indicator gets
//   tokens with that audience (the protected resource listens on a random port).
// --opaque: those tokens are opaque (checked by introspection) instead of JWTs (RFC 9068).
// --token-exchange: enable RFC 8693 token exchange (registered through oidc-provider's
//   public registerGrantType API) for a second confidential client, exchange-client /
//   exchange-secret: a valid access token of this AS is exchanged for one for exactly one
//   `resource`, keeping its `sub`, only down-scoping, and naming the caller in `act`.
//
// --upstream-client ID:SECRET: also act as the identity provider mcp-warden's sign-in server
//   federates to: a confidential native client with a loopback redirect (any port, RFC 8252),
//   and the users of --accounts '{"alice": {"email": …, "email_verified": true,
//   "name": …, "groups": […]}, …}' whose claims (scopes openid email profile groups) come
//   from UserInfo. The next headless login is --user, or the one set by
//   POST /__test/next-user?user=NAME.
// --connection-client ID:SECRET: a confidential native client with the loopback redirect of
//   mcp-warden's connect flow (/connections/callback, any port): the provider users connect
//   their accounts at; its access tokens (scope openid) open UserInfo (/me), the API a
//   server calls as the user.
// --login-page: instead of that headless login, the provider shows a sign-in page (a form
//   asking for the user name, posted back to the interaction) for a real browser to fill.
//
// Prints `AS_READY <issuer>` on stdout once listening. Endpoints: discovery at
// /.well-known/openid-configuration and /.well-known/oauth-authorization-server (same
// document), /jwks, /auth, /token, /token/introspection, /reg (open dynamic registration).
// Pre-registered confidential client: test-client / test-secret (client_secret_basic;
// client_credentials, authorization_code, refresh_token), allowed to introspect.
// Test hooks: POST /__test/rotate-keys[?keep_old=1] -> {"kid": <new signing key>};
// POST /__test/forget-refresh-tokens: every refresh token issued so far stops working;
// GET /__test/issued-tokens: the access and refresh tokens issued to --connection-client.
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const { values: a } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'any-loopback-resource': { type: 'boolean', default: false },
    opaque: { type: 'boolean', default: false },
    scopes: { type: 'string', default: 'mcp:tools mcp:admin' },
    alg: { type: 'string', default: 'RS256' },
    ttl: { type: 'string', default: '3600' },
    user: { type: 'string', default: 'test-user' },
    'token-exchange': { type: 'boolean', default: false },
    'upstream-client': { type: 'string' },
    accounts: { type: 'string', default: '{}' },
    'login-page': { type: 'boolean', default: false },
    'connection-client': { type: 'string' },
  },
});
const ACCOUNTS = JSON.parse(a.accounts);
let nextUser;
const issued = [];
const UPSTREAM = a['upstream-client'] ? a['upstream-client'].split(':') : undefined;
const CONNECTION = a['connection-client'] ? a['connection-client'].split(':') : undefined;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const EXTRA = Symbol('extraClaims');
const SCOPES = a.scopes.split(' ').filter(Boolean);
const TTL = Number(a.ttl);

// ---------------------------------------------------------------- keys (node:crypto only)
function newKey(alg) {
  const [type, options] = alg.startsWith('RS') || alg.startsWith('PS')
    ? ['rsa', { modulusLength: 2048 }]
    : alg === 'ES256' ? ['ec', { namedCurve: 'P-256' }] : ['ed25519', {}];
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `k-${crypto.randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}
let jwks = { keys: [newKey(a.alg)] };

// ---------------------------------------------------------------- resource servers
function resourceInfo(indicator) {
  let loopback = false;
  try {
    const u = new URL(indicator);
    loopback = u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) && !u.hash;
  } catch { /* not a URL */ }
  if (!loopback || !a['any-loopback-resource']) return undefined;
  const base = { scope: SCOPES.join(' '), audience: indicator, accessTokenTTL: TTL };
  return a.opaque
    ? { ...base, accessTokenFormat: 'opaque' }
    : { ...base, accessTokenFormat: 'jwt', jwt: { sign: { alg: jwks.keys[0].alg } } };
}

// ---------------------------------------------------------------- storage
// Process-global, so clients, grants and tokens survive a key rotation (which swaps the
// Provider instance).
const store = new Map();
const live = (k) => { const e = store.get(k); if (e?.exp && e.exp < Date.now()) { store.delete(k); return undefined; } return e?.payload; };
class SharedAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const exp = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    store.set(this.key(id), { payload, exp });
    if (payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      store.set(gk, { payload: [...(live(gk) ?? []), this.key(id)] });
    }
    if (this.model === 'Session') store.set(`sessionUid:${payload.uid}`, { payload: id, exp });
  }
  async find(id) { return live(this.key(id)); }
  async findByUid(uid) { const id = live(`sessionUid:${uid}`); return id && this.find(id); }
  async findByUserCode() { return undefined; }
  async consume(id) { const p = live(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const k of live(`grant:${grantId}`) ?? []) store.delete(k);
    store.delete(`grant:${grantId}`);
  }
}

// ---------------------------------------------------------------- provider
const server = http.createServer((req, res) => handle(req, res));
await new Promise((r) => server.listen(Number(a.port), '127.0.0.1', r));
const ISSUER = `http://127.0.0.1:${server.address().port}`;

function buildProvider() {
  const provider = new Provider(ISSUER, {
    jwks,
    adapter: SharedAdapter,
    clientDefaults: { id_token_signed_response_alg: jwks.keys[0].alg },
    cookies: { keys: ['test-cookie-key'] },
    scopes: ['openid', 'offline_access', ...(UPSTREAM ? ['email', 'profile', 'groups'] : []), ...SCOPES],
    ...(UPSTREAM ? { claims: { email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] } } : {}),
    clients: [{
      client_id: 'test-client',
      client_secret: 'test-secret',
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:33418/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    }, ...(a['token-exchange'] ? [{
      client_id: 'exchange-client',
      client_secret: 'exchange-secret',
      grant_types: ['client_credentials', TOKEN_EXCHANGE],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }] : []), ...(UPSTREAM ? [{
      client_id: UPSTREAM[0],
      client_secret: UPSTREAM[1],
      application_type: 'native',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/oauth/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    }] : []), ...(CONNECTION ? [{
      client_id: CONNECTION[0],
      client_secret: CONNECTION[1],
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/connections/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    }] : [])],
    extraTokenClaims: (ctx, token) => token[EXTRA],
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ ...(ACCOUNTS[id] ?? {}), sub: id }) }),
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      revocation: { enabled: true },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const info = resourceInfo(indicator);
          if (!info) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return info;
        },
      },
    },
    responseTypes: ['code'],
    ttl: { AccessToken: TTL, ClientCredentials: TTL, Interaction: 600, Session: 3600, Grant: 86400, RefreshToken: 86400, AuthorizationCode: 60 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => true,
    renderError: (ctx, out) => { ctx.type = 'json'; ctx.body = out; },
  });
  provider.on('server_error', (ctx, err) => console.error('[as] server_error', err));
  // The connection client's tokens as issued, for tests that look for them where they must
  // not be (logs, audit records, the state store).
  for (const kind of ['access_token', 'refresh_token']) {
    provider.on(`${kind}.saved`, (token) => {
      if (CONNECTION && token.clientId === CONNECTION[0]) issued.push(token.jti);
    });
  }
  if (a['token-exchange']) {
    provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange,
      ['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience', 'scope'],
      ['resource']);
  }
  return provider;
}
let provider = buildProvider();
let callback = provider.callback();

// RFC 8693 §2: the subject token must be a valid access token of this AS (a JWT checked
// against our own keys, or an opaque one looked up); the new token keeps its subject.
async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  const p = ctx.oidc.provider;
  if (!params.subject_token) throw new errors.InvalidRequest('missing subject_token');
  if (params.subject_token_type !== AT_TYPE) throw new errors.InvalidRequest('unsupported subject_token_type');
  if (params.requested_token_type && params.requested_token_type !== AT_TYPE) throw new errors.InvalidRequest('unsupported requested_token_type');
  let subject;
  if (params.subject_token.split('.').length === 3) {
    try {
      const pub = { keys: jwks.keys.map(({ d, p: _p, q, dp, dq, qi, ...k }) => k) };
      const { payload } = await jose.jwtVerify(params.subject_token, jose.createLocalJWKSet(pub), { issuer: ISSUER, typ: 'at+jwt' });
      subject = { sub: payload.sub, scope: payload.scope, clientId: payload.client_id };
    } catch (e) { throw new errors.InvalidGrant(`subject_token invalid: ${e.code ?? e.message}`); }
  } else {
    const t = (await p.AccessToken.find(params.subject_token)) ?? (await p.ClientCredentials.find(params.subject_token));
    if (!t || !t.isValid) throw new errors.InvalidGrant('subject_token invalid or expired');
    subject = { sub: t.accountId ?? t.clientId, scope: t.scope, clientId: t.clientId };
  }
  const resources = [params.resource].flat().filter(Boolean);
  if (resources.length !== 1) throw new errors.InvalidTarget('exactly one resource parameter is required');
  const info = resourceInfo(resources[0]);
  if (!info) throw new errors.InvalidTarget();
  const rs = new p.ResourceServer(resources[0], info);
  const have = new Set((subject.scope ?? '').split(' ').filter(Boolean));
  const wanted = params.scope ? params.scope.split(' ') : [...have];
  const extra = wanted.filter((s) => !have.has(s));
  if (extra.length) throw new errors.InvalidScope('scope exceeds subject_token scope', extra.join(' '));
  const scope = wanted.filter((s) => rs.scopes.has(s)).join(' ') || undefined;
  const at = new p.AccessToken({ accountId: subject.sub, client, scope, gty: 'token-exchange' });
  at.resourceServer = rs;
  at[EXTRA] = { act: { sub: client.clientId }, ...(subject.clientId ? { subject_client_id: subject.clientId } : {}) };
  ctx.oidc.entity('AccessToken', at);
  const value = await at.save();
  ctx.body = { access_token: value, issued_token_type: AT_TYPE, token_type: 'Bearer', expires_in: at.expiration, scope };
}

// The authorization endpoint sends the browser to /interaction/<uid>: log the user in
// (login_hint or --user) and grant everything requested, then let the redirects continue.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login' && a['login-page']) {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><title>Provider sign-in</title><h1>Sign in to the provider</h1>
<form method="post" action="/interaction/${details.uid}"><label>User <input id="provider-user" name="user"></label>
<button id="provider-continue" type="submit">Sign in</button></form>`);
    }
    let body = '';
    for await (const chunk of req) body += chunk;
    result = { login: { accountId: new URLSearchParams(body).get('user') } };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: params.login_hint || nextUser || a.user } };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function handle(req, res) {
  try {
    const url = new URL(req.url, ISSUER);
    if (url.pathname.startsWith('/interaction/') && (req.method === 'GET' || (a['login-page'] && req.method === 'POST'))) return await interaction(req, res);
    if (url.pathname === '/__test/next-user' && req.method === 'POST') {
      nextUser = url.searchParams.get('user') || undefined;
      res.writeHead(204);
      return res.end();
    }
    if (url.pathname === '/__test/issued-tokens' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(issued));
    }
    if (url.pathname === '/__test/forget-refresh-tokens' && req.method === 'POST') {
      for (const k of [...store.keys()]) if (k.startsWith('RefreshToken:')) store.delete(k);
      res.writeHead(204);
      return res.end();
    }
    if (url.pathname === '/__test/rotate-keys' && req.method === 'POST') {
      const fresh = newKey(jwks.keys[0].alg);
      jwks = { keys: url.searchParams.get('keep_old') === '1' ? [fresh, ...jwks.keys] : [fresh] };
      provider = buildProvider();
      callback = provider.callback();
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ kid: fresh.kid }));
    }
    if (url.pathname === '/.well-known/oauth-authorization-server') {
      req.url = '/.well-known/openid-configuration' + url.search; // RFC 8414: same document
    }
    return callback(req, res);
  } catch (e) {
    res.writeHead(e.statusCode ?? 500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: e.error ?? 'server_error', error_description: e.error_description ?? e.message }));
  }
}

console.log(`AS_READY ${ISSUER}`);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.closeAllConnections?.(); server.close(() => process.exit(0)); });
