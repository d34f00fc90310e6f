// A stand-in for GitHub's wire contract, for the one sign-in provider the tests cannot
// reach: the OAuth web flow (GET /login/oauth/authorize, POST /login/oauth/access_token with
// PKCE S256, errors answered as 200 + {"error": …} as GitHub does) and the REST API under
// /api/v3 (GitHub Enterprise Server's layout): /user, /user/emails (needs user:email),
// /user/orgs and /user/teams (need read:org), each refusing a request without a token or a
// User-Agent. The authorize step signs the next user in headlessly.
//
//   node github.mjs --client ID:SECRET --users '{"octo": {"id": 1, "name": …,
//        "emails": [{"email": …, "primary": true, "verified": true}], "orgs": ["acme"],
//        "teams": [["acme", "platform"]]}, …}' --user octo
//
// Prints `GITHUB_READY <base URL>`. Test hooks: POST /__test/next-user?user=NAME;
// GET /__test/tokens -> the access tokens issued so far.
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    client: { type: 'string' },
    users: { type: 'string', default: '{}' },
    user: { type: 'string' },
  },
});
const [CLIENT_ID, CLIENT_SECRET] = a.client.split(':');
const USERS = JSON.parse(a.users);
let nextUser = a.user;
const codes = new Map(); // code -> {login, redirectUri, challenge, scope}
const tokens = new Map(); // token -> {login, scopes}

const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
};
const readBody = async (req) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body;
};
const s256 = (v) => crypto.createHash('sha256').update(v).digest('base64url');

function authorize(url, res) {
  const p = url.searchParams;
  if (p.get('client_id') !== CLIENT_ID) return json(res, 404, { error: 'unknown client' });
  const redirectUri = p.get('redirect_uri');
  if (!redirectUri) return json(res, 400, { error: 'redirect_uri required' });
  const challenge = p.get('code_challenge');
  if (challenge && p.get('code_challenge_method') !== 'S256') return json(res, 400, { error: 'S256 only' });
  const known = new Set(['read:user', 'user:email', 'read:org']);
  const scope = (p.get('scope') ?? '').split(/[ ,]+/).filter((s) => known.has(s));
  const code = crypto.randomBytes(10).toString('hex');
  codes.set(code, { login: nextUser, redirectUri, challenge, scope });
  const back = new URL(redirectUri);
  back.searchParams.set('code', code);
  if (p.get('state')) back.searchParams.set('state', p.get('state'));
  res.writeHead(302, { location: back.toString() });
  res.end();
}

async function accessToken(req, res) {
  const body = await readBody(req);
  const p = req.headers['content-type']?.startsWith('application/json')
    ? new URLSearchParams(JSON.parse(body)) : new URLSearchParams(body);
  const answer = (b) => json(res, 200, b);
  if (p.get('client_id') !== CLIENT_ID || p.get('client_secret') !== CLIENT_SECRET) {
    return answer({ error: 'incorrect_client_credentials', error_description: 'The client_id and/or client_secret passed are incorrect.' });
  }
  const grant = codes.get(p.get('code'));
  codes.delete(p.get('code'));
  if (!grant) return answer({ error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' });
  if (p.get('redirect_uri') && p.get('redirect_uri') !== grant.redirectUri) {
    return answer({ error: 'redirect_uri_mismatch' });
  }
  if (grant.challenge && s256(p.get('code_verifier') ?? '') !== grant.challenge) {
    return answer({ error: 'bad_verification_code', error_description: 'PKCE verification failed.' });
  }
  const token = `gho_${crypto.randomBytes(18).toString('base64url')}`;
  tokens.set(token, { login: grant.login, scopes: grant.scope });
  answer({ access_token: token, token_type: 'bearer', scope: grant.scope.join(',') });
}

function api(req, res, path) {
  if (!req.headers['user-agent']) return json(res, 403, { message: 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header' });
  const auth = req.headers.authorization ?? '';
  const t = tokens.get(auth.replace(/^(Bearer|token) /i, ''));
  if (!t) return json(res, 401, { message: 'Bad credentials' });
  const u = USERS[t.login];
  const has = (s) => t.scopes.includes(s);
  const headers = { 'x-oauth-scopes': t.scopes.join(', ') };
  switch (path) {
    case '/user':
      return json(res, 200, { login: t.login, id: u.id, name: u.name ?? null, email: u.public_email ?? null, type: 'User' }, headers);
    case '/user/emails':
      if (!has('user:email')) return json(res, 404, { message: 'Not Found' }, headers);
      return json(res, 200, (u.emails ?? []).map((e) => ({ visibility: null, ...e })), headers);
    case '/user/orgs':
      return json(res, 200, has('read:org') ? (u.orgs ?? []).map((login, i) => ({ login, id: 1000 + i })) : [], headers);
    case '/user/teams':
      if (!has('read:org')) return json(res, 403, { message: 'Resource not accessible by integration' }, headers);
      return json(res, 200, (u.teams ?? []).map(([org, slug], i) => ({ slug, id: 2000 + i, organization: { login: org } })), headers);
    default:
      return json(res, 404, { message: 'Not Found' });
  }
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') return authorize(url, res);
    if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') return await accessToken(req, res);
    if (req.method === 'GET' && url.pathname.startsWith('/api/v3/')) return api(req, res, url.pathname.slice('/api/v3'.length));
    if (req.method === 'POST' && url.pathname === '/__test/next-user') {
      nextUser = url.searchParams.get('user');
      res.writeHead(204);
      return res.end();
    }
    if (req.method === 'GET' && url.pathname === '/__test/tokens') return json(res, 200, [...tokens.keys()]);
    json(res, 404, { message: 'Not Found' });
  } catch (e) {
    json(res, 500, { message: String(e) });
  }
});
server.listen(0, '127.0.0.1', () => {
  console.log(`GITHUB_READY http://127.0.0.1:${server.address().port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.closeAllConnections?.(); server.close(() => process.exit(0)); });
