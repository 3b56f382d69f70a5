#!/usr/bin/env node
// tokenvault's test peer: a real OAuth 2.0 / OpenID Connect authorization server
// (the OpenID-certified `oidc-provider` package), configured like a provider
// that tokenvault keeps refresh tokens for, plus a few test hooks.
//
// FOR TESTS ONLY. It runs plain HTTP on loopback, lets anyone sign in as any
// account (devInteractions), and exposes unauthenticated /test/* hooks.
//
// Usage:
//   node server.mjs [--port N] [--redirect-uris URI[,URI...]]
//                   [--access-token-ttl SECONDS] [--state-dir DIR]
//                   [--exit-with-stdin]
// Each flag falls back to an environment variable: OIDC_PORT, OIDC_REDIRECT_URIS,
// OIDC_ACCESS_TOKEN_TTL, OIDC_STATE_DIR. Defaults: port 0 (any free port),
// redirect URI http://127.0.0.1:9/callback, access tokens live 60 s, state in
// memory only.
//
// With --state-dir, signing keys, cookie keys and every grant, token and session
// are kept in that directory, so the server can be stopped and started again on
// the same port (same issuer) and the tokens it issued stay valid.
//
// When it listens, it prints exactly one line to stdout:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT","port":PORT}
// Everything else (logs) goes to stderr. No token, code or secret is ever
// logged.
//
// Clients (confidential, authorization_code + refresh_token, PKCE S256 required,
// scope "openid offline_access profile email"):
//   tokenvault       / tokenvault-secret        client_secret_basic
//   tokenvault-post  / tokenvault-post-secret   client_secret_post
// Client credentials (RFC 6749 4.4) only, scope "api.read api.write":
//   tokenvault-machine / tokenvault-machine-secret   client_secret_basic
// Device authorization grant (RFC 8628) + refresh_token, scope
// "openid offline_access profile email", no redirect URIs:
//   tokenvault-device  / tokenvault-device-secret    client_secret_basic
// (oidc-provider accepts client_secret_post from any client registered with
// client_secret_basic, and the reverse.)
//
// Behaviour that matters to tokenvault:
// - A refresh token is issued only when `offline_access` is granted, and
//   oidc-provider drops `offline_access` from an authorization request unless it
//   carries `prompt=consent` (as Google does). Request it with prompt=consent.
// - Refresh tokens rotate on every use (rotateRefreshToken: true). Presenting a
//   refresh token that was already rotated answers `invalid_grant` and revokes
//   the whole grant: every access and refresh token of it, including the newest.
// - RFC 7009 revocation (POST /token/revocation) of a refresh token revokes the
//   whole grant too; of an access token, only that token.
// - Introspection (POST /token/introspection, client authentication) and
//   userinfo (GET /me, Bearer access token) are on.
// - Client credentials: opaque access tokens (no refresh token, no ID token)
//   that live as long as the others (--access-token-ttl). A scope the client
//   may not have (api.admin is known but allowed to no client; openid ...)
//   answers invalid_scope; a scope the server does not know is dropped.
// - Device flow: POST /device/auth, user pages at /device (oidc-provider's
//   development pages, then the devInteractions login and consent), polling
//   with grant_type=urn:ietf:params:oauth:grant-type:device_code. offline_access
//   is kept without prompt=consent there (that parameter is ignored), so a
//   device grant gets a refresh token. Device codes live 600 s (see
//   /test/device-flow); an expired one answers expired_token for 600 s more.
//   oidc-provider never answers slow_down (inject it with /test/fail) and its
//   device authorization answers carry no interval (RFC 8628's default: 5 s).
//
// Test hooks (development only; unauthenticated; never in a real deployment):
//   GET  /test/counters      -> {"token_requests":M,"refresh_grants":N,
//                                "refresh_grants_succeeded":S,"grants_revoked":R,
//                                "client_credentials_grants":C,
//                                "device_code_grants":D}
//        token_requests: every request that reached POST /token (including
//        injected failures); refresh_grants: those with
//        grant_type=refresh_token; refresh_grants_succeeded: refresh grants that
//        issued tokens; grants_revoked: grants revoked for any reason;
//        client_credentials_grants: token requests with
//        grant_type=client_credentials; device_code_grants: token requests
//        (polls) with grant_type=urn:ietf:params:oauth:grant-type:device_code.
//        The last two count injected failures too, as refresh_grants does.
//   POST /test/reset-counters -> sets all counters to 0.
//   POST /test/slow?ms=N     -> every token-endpoint response waits N ms first
//        (0 = off). The request is processed only after the wait and only if the
//        client is still connected, so a client that times out has not used its
//        refresh token.
//   POST /test/fail?status=503&count=K[&error=CODE]
//                            -> the next K token-endpoint requests answer
//        `status` with {"error":CODE} (default temporarily_unavailable for 429
//        and 5xx, invalid_request otherwise) without being processed;
//        429 and 503 carry `Retry-After: 1`. count=0 clears.
//   POST /test/refresh-token-lifetime?secs=N
//                            -> token-endpoint answers that carry a refresh
//        token also say refresh_token_expires_in: N, as GitHub Apps and Google
//        apps in testing do (0 = off). Only the answer says so: oidc-provider
//        keeps the token's own lifetime.
//   POST /test/quirks?[nested=KEY][&omit_expires_in=1][&rotate=0][&pkce=0]
//                     [&expiry_field=NAME][&comma_scopes=1][&subject_field=KEY]
//                            -> behave like a provider with these quirks, until
//        the next call (every call sets them all; no parameters = standard):
//        nested: token answers carry the tokens (and `id`, the account) in an
//        object under KEY, as Slack's `authed_user`; omit_expires_in: answers
//        carry no expires_in; rotate=0: refresh tokens do not rotate; pkce=0:
//        PKCE is not required; expiry_field: the refresh-token lifetime (see
//        /test/refresh-token-lifetime) goes under NAME; comma_scopes:
//        authorization requests separate scopes with commas and answers say
//        `scope` that way too; subject_field: answers carry the account id
//        under KEY at the top level, as Dropbox's `account_id`.
//   POST /test/device-flow?[interval=N][&expires_in=M]
//                            -> device authorization answers carry
//        `interval: N` (0 = none, the default, as oidc-provider) and device
//        codes issued from now on live M seconds (default 600), until the next
//        call (every call sets both). The interval is only announced, never
//        enforced.
//   POST /test/revoke-grant?account=ID
//                            -> revokes every grant of the account (all its
//        tokens), as when the user removes the app at the provider; answers
//        {"revoked":<number of grants>}.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

import { adapterFactory, loadOrCreate, Store } from './store.mjs';

// oidc-provider prints notices with console.info (stdout); stdout is reserved
// for the ready line.
console.log = console.error;
console.info = console.error;

const log = (message) => process.stderr.write(`oidc-peer: ${message}\n`);

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'redirect-uris': { type: 'string' },
    'access-token-ttl': { type: 'string' },
    'state-dir': { type: 'string' },
    // Exit when stdin closes: the test harness holds the other end, so the
    // server cannot outlive the test process that started it.
    'exit-with-stdin': { type: 'boolean' },
  },
});

function integer(name, value, fallback) {
  if (value === undefined || value === '') {
    return fallback;
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

const port = integer('port', args.port ?? process.env.OIDC_PORT, 0);
const accessTokenTtl = integer(
  'access-token-ttl',
  args['access-token-ttl'] ?? process.env.OIDC_ACCESS_TOKEN_TTL,
  60,
);
const redirectUris = (args['redirect-uris'] ?? process.env.OIDC_REDIRECT_URIS ?? 'http://127.0.0.1:9/callback')
  .split(',')
  .map((uri) => uri.trim())
  .filter(Boolean);
const stateDir = args['state-dir'] ?? process.env.OIDC_STATE_DIR;

if (accessTokenTtl < 1) {
  throw new Error('access-token-ttl must be at least 1 second');
}

const store = new Store(stateDir ? `${stateDir}/store.json` : undefined);

const jwks = loadOrCreate(stateDir, 'jwks.json', () => {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    keys: [{
      ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: crypto.randomUUID(),
    }],
  };
});
const cookieKeys = loadOrCreate(stateDir, 'cookie-keys.json', () => [crypto.randomBytes(32).toString('base64url')]);

// --- test hook state ---------------------------------------------------------
const counters = {
  token_requests: 0,
  refresh_grants: 0,
  refresh_grants_succeeded: 0,
  grants_revoked: 0,
  client_credentials_grants: 0,
  device_code_grants: 0,
};
let slowMs = 0;
let refreshTokenLifetime = 0;
// Device authorization answers: `interval` (0 = none, as oidc-provider) and
// the device code's lifetime.
const standardDeviceFlow = () => ({ interval: 0, expiresIn: 600 });
let deviceFlow = standardDeviceFlow();
const standardQuirks = () => ({
  nested: '',
  omitExpiresIn: false,
  rotate: true,
  pkce: true,
  expiryField: 'refresh_token_expires_in',
  commaScopes: false,
  subjectField: '',
});
let quirks = standardQuirks();
const failure = { status: 0, count: 0, error: '' };

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// The server listens first so that port 0 resolves before the issuer is fixed.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => {
    server.off('error', reject);
    resolve();
  });
});
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

const clientDefaults = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: redirectUris,
  scope: 'openid offline_access profile email',
};

// The store forgets a record when it expires. Device codes are kept
// DEVICE_CODE_GRACE seconds longer, so that polling with an expired one
// answers `expired_token` (RFC 8628) rather than `invalid_grant`.
const DEVICE_CODE_GRACE = 600;
const storeAdapter = adapterFactory(store);
const adapter = (model) => {
  const instance = storeAdapter(model);
  if (model === 'DeviceCode') {
    const upsert = instance.upsert.bind(instance);
    instance.upsert = (id, payload, expiresIn) => upsert(
      id,
      payload,
      typeof expiresIn === 'number' ? expiresIn + DEVICE_CODE_GRACE : expiresIn,
    );
  }
  return instance;
};

const provider = new Provider(issuer, {
  adapter,
  jwks,
  cookies: { keys: cookieKeys },
  clients: [
    {
      ...clientDefaults,
      client_id: 'tokenvault',
      client_secret: 'tokenvault-secret',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      ...clientDefaults,
      client_id: 'tokenvault-post',
      client_secret: 'tokenvault-post-secret',
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      // Machine-to-machine: client credentials only, no end-user.
      client_id: 'tokenvault-machine',
      client_secret: 'tokenvault-machine-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api.read api.write',
    },
    {
      // RFC 8628 device authorization grant (input-constrained devices).
      client_id: 'tokenvault-device',
      client_secret: 'tokenvault-device-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      scope: 'openid offline_access profile email',
    },
  ],
  // Any account id signs in; `sub` is the account id.
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          // A second stable id, as Microsoft's `oid` beside its pairwise `sub`.
          oid: `oid-${id}`,
          email: `${id}@example.test`,
          email_verified: true,
          name: id,
        };
      },
    };
  },
  claims: {
    openid: ['sub', 'oid'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // api.read / api.write: client-credentials scopes (tokenvault-machine only);
  // api.admin: known but allowed to no client (answers invalid_scope).
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api.read', 'api.write', 'api.admin'],
  // ID tokens carry every claim of the granted scopes (`oid` among them),
  // not only those asked for with the claims parameter.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    // RFC 8628, with oidc-provider's own (development) user-code, confirm and
    // success pages.
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      // Confidential clients may introspect any token (tests check that an
      // access token is active).
      allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none',
    },
    userinfo: { enabled: true },
  },
  pkce: { required: () => quirks.pkce },
  // Refresh tokens are issued when offline_access was granted (the default
  // policy, spelled out): oidc-provider itself drops offline_access from an
  // authorization request without prompt=consent.
  async issueRefreshToken(_ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  rotateRefreshToken: () => quirks.rotate,
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    // Client-credentials access tokens live as long as the others.
    ClientCredentials: accessTokenTtl,
    DeviceCode: () => deviceFlow.expiresIn,
    IdToken: 3600,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
  },
});

provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params?.grant_type === 'refresh_token') {
    counters.refresh_grants_succeeded += 1;
  }
});
provider.on('grant.error', (ctx, err) => {
  // error_detail is oidc-provider's reason ("refresh token already used" ...),
  // never a token value.
  log(`token endpoint error: ${err.error ?? err.name}: ${err.error_detail ?? err.error_description ?? ''}`);
});
provider.on('grant.revoked', () => {
  counters.grants_revoked += 1;
  log('grant revoked');
});
provider.on('server_error', (_ctx, err) => {
  log(`server error: ${err.message}`);
});

function json(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

async function readBody(req) {
  const chunks = [];
  let received = 0;
  for await (const chunk of req) {
    received += chunk.length;
    if (received > 64 * 1024) {
      throw new Error('request body too large');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// Access log: method, path and status only (never query strings or bodies).
provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    await next();
  } finally {
    log(`${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)`);
  }
});

// DEVELOPMENT-ONLY test hooks: /test/* endpoints.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/test/')) {
    return next();
  }
  const { query } = ctx;
  switch (`${ctx.method} ${ctx.path}`) {
    case 'GET /test/counters':
      return json(ctx, 200, counters);
    case 'POST /test/reset-counters':
      for (const key of Object.keys(counters)) {
        counters[key] = 0;
      }
      return json(ctx, 200, counters);
    case 'POST /test/slow':
      slowMs = integer('ms', query.ms, 0);
      log(`token endpoint delay set to ${slowMs} ms`);
      return json(ctx, 200, { slow_ms: slowMs });
    case 'POST /test/device-flow': {
      const interval = integer('interval', query.interval, 0);
      const expiresIn = integer('expires_in', query.expires_in, 600);
      if (expiresIn < 1) {
        return json(ctx, 400, { error: 'expires_in must be at least 1' });
      }
      deviceFlow = { interval, expiresIn };
      log(`device flow: ${JSON.stringify(deviceFlow)}`);
      return json(ctx, 200, { interval, expires_in: expiresIn });
    }
    case 'POST /test/refresh-token-lifetime':
      refreshTokenLifetime = integer('secs', query.secs, 0);
      log(`answers say refresh_token_expires_in ${refreshTokenLifetime}`);
      return json(ctx, 200, { refresh_token_expires_in: refreshTokenLifetime });
    case 'POST /test/fail': {
      const status = integer('status', query.status, 503);
      const count = integer('count', query.count, 1);
      if (status < 400 || status > 599) {
        return json(ctx, 400, { error: 'status must be 400..599' });
      }
      failure.status = status;
      failure.count = count;
      failure.error = query.error
        || (status === 429 || status >= 500 ? 'temporarily_unavailable' : 'invalid_request');
      log(`next ${count} token endpoint requests fail with ${status} ${failure.error}`);
      return json(ctx, 200, { status, count, error: failure.error });
    }
    case 'POST /test/quirks': {
      quirks = standardQuirks();
      if (query.nested) quirks.nested = String(query.nested);
      if (query.omit_expires_in === '1') quirks.omitExpiresIn = true;
      if (query.rotate === '0') quirks.rotate = false;
      if (query.pkce === '0') quirks.pkce = false;
      if (query.expiry_field) quirks.expiryField = String(query.expiry_field);
      if (query.comma_scopes === '1') quirks.commaScopes = true;
      if (query.subject_field) quirks.subjectField = String(query.subject_field);
      log(`quirks: ${JSON.stringify(quirks)}`);
      return json(ctx, 200, quirks);
    }
    case 'POST /test/revoke-grant': {
      const account = query.account;
      if (typeof account !== 'string' || account === '') {
        return json(ctx, 400, { error: 'account is required' });
      }
      const grantIds = store.grantIdsOfAccount(account);
      for (const grantId of grantIds) {
        store.revokeGrant(grantId);
        counters.grants_revoked += 1;
      }
      log(`revoked ${grantIds.length} grant(s) of an account`);
      return json(ctx, 200, { revoked: grantIds.length });
    }
    default:
      return json(ctx, 404, { error: 'no such test hook' });
  }
});

// DEVELOPMENT-ONLY: comma-separated scopes in authorization requests, read
// the way oidc-provider reads space-separated ones.
provider.use(async (ctx, next) => {
  if (quirks.commaScopes && ctx.method === 'GET' && ctx.path === '/auth'
    && typeof ctx.query.scope === 'string' && ctx.query.scope.includes(',')) {
    ctx.querystring = querystring.stringify({ ...ctx.query, scope: ctx.query.scope.split(',').join(' ') });
  }
  return next();
});

// DEVELOPMENT-ONLY: device authorization answers carry `interval` when set
// with /test/device-flow (oidc-provider sends none, so clients poll every 5 s,
// RFC 8628's default).
provider.use(async (ctx, next) => {
  await next();
  if (deviceFlow.interval > 0 && ctx.method === 'POST' && ctx.path === '/device/auth'
    && ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && ctx.body.device_code) {
    ctx.body.interval = deviceFlow.interval;
  }
});

// The account an answer's ID token names (the answer is the server's own).
function subjectOf(body) {
  try {
    return JSON.parse(Buffer.from(body.id_token.split('.')[1], 'base64url').toString('utf8')).sub;
  } catch {
    return undefined;
  }
}

// Rewrites a token-endpoint success answer with the configured quirks.
function applyQuirks(body) {
  const expiryMembers = ['refresh_token_expires_in'];
  if (refreshTokenLifetime > 0 && body.refresh_token) {
    body[quirks.expiryField] = refreshTokenLifetime;
    expiryMembers.push(quirks.expiryField);
  }
  if (quirks.omitExpiresIn) {
    delete body.expires_in;
  }
  if (quirks.commaScopes && typeof body.scope === 'string') {
    body.scope = body.scope.split(' ').join(',');
  }
  const sub = subjectOf(body);
  if (quirks.subjectField && sub) {
    body[quirks.subjectField] = sub;
  }
  if (quirks.nested) {
    const inner = { id: sub };
    for (const member of ['access_token', 'token_type', 'expires_in', 'refresh_token', 'scope', ...expiryMembers]) {
      if (member in body) {
        inner[member] = body[member];
        delete body[member];
      }
    }
    body.ok = true;
    body[quirks.nested] = inner;
  }
}

// DEVELOPMENT-ONLY test hooks: counting, slowing and failing the token endpoint.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/token') {
    return next();
  }
  counters.token_requests += 1;

  // Read the body here to see the grant type, then hand it to oidc-provider
  // (which accepts an already-read body from req.body).
  let body = '';
  try {
    body = await readBody(ctx.req);
  } catch (err) {
    return json(ctx, 400, { error: 'invalid_request', error_description: err.message });
  }
  ctx.req.body = body;
  if (ctx.is('application/x-www-form-urlencoded')) {
    switch (querystring.parse(body).grant_type) {
      case 'refresh_token':
        counters.refresh_grants += 1;
        break;
      case 'client_credentials':
        counters.client_credentials_grants += 1;
        break;
      case 'urn:ietf:params:oauth:grant-type:device_code':
        counters.device_code_grants += 1;
        break;
      default:
        break;
    }
  }

  if (slowMs > 0) {
    let gone = false;
    const onClose = () => { gone = true; };
    ctx.res.once('close', onClose);
    await sleep(slowMs);
    ctx.res.off('close', onClose);
    if (gone || ctx.req.socket.destroyed) {
      log('token request dropped: the client went away during the injected delay');
      ctx.respond = false;
      return undefined;
    }
  }

  if (failure.count > 0) {
    failure.count -= 1;
    if (failure.status === 429 || failure.status === 503) {
      ctx.set('Retry-After', '1');
    }
    ctx.set('Cache-Control', 'no-store');
    return json(ctx, failure.status, {
      error: failure.error,
      error_description: 'failure injected by the test peer',
    });
  }

  await next();
  if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && ctx.body.access_token) {
    applyQuirks(ctx.body);
  }
  return undefined;
});

server.on('request', provider.callback());

const shutdown = (signal) => {
  log(`${signal}: shutting down`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (args['exit-with-stdin']) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

log(`listening; issuer ${issuer}; access tokens live ${accessTokenTtl} s; state ${stateDir ?? 'in memory'}`);
process.stdout.write(`${JSON.stringify({ ready: true, issuer, port: actualPort })}\n`);
