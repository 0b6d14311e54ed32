// A real OpenID provider (the npm package `oidc-provider`, OpenID-certified) for Tessera's
// tests, on loopback only. Clients use the client-credentials grant; access tokens are
// JWTs for the resource `urn:tessera:api` (or `urn:other:api`, another audience), signed
// with RS256, ES256 or EdDSA as the client's name ends (`-rs`, `-es`, `-ed`), carrying
// Keycloak's claims: `preferred_username` and `realm_access.roles`.
//
// Environment:
//   OIDC_PORT               the port on 127.0.0.1 (required)
//   OIDC_ISSUER             the issuer [default: http://127.0.0.1:$OIDC_PORT]
//   OIDC_KEYS               a file with the private JWKS; made when missing (a new file
//                           is a key rotation)
//   OIDC_CLOCK_OFFSET_SECS  shift the provider's clock (tokens from it are expired, or
//                           not yet valid)
//   OIDC_NODE_MODULES       the node_modules directory holding oidc-provider
//                           (scripts/test-env.sh installs it)
//
// Prints `ready` on stdout once it listens.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

const modules = process.env.OIDC_NODE_MODULES;
if (!modules) {
  console.error('OIDC_NODE_MODULES is required');
  process.exit(2);
}
const entry = createRequire(path.join(modules, 'x.js')).resolve('oidc-provider');
const { default: Provider } = await import(pathToFileURL(entry).href);

const port = Number(process.env.OIDC_PORT);
if (!port) {
  console.error('OIDC_PORT is required');
  process.exit(2);
}
const issuer = process.env.OIDC_ISSUER || `http://127.0.0.1:${port}`;

const offset = Number(process.env.OIDC_CLOCK_OFFSET_SECS || 0);
if (offset) {
  const realNow = Date.now;
  Date.now = () => realNow() + offset * 1000;
}

const ALGS = { rs: 'RS256', es: 'ES256', ed: 'EdDSA' };

function makeKeys() {
  const pair = (type, options) => generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...pair('rsa', { modulusLength: 2048 }), kid: `rs-${randomUUID()}`, alg: 'RS256', use: 'sig' },
      { ...pair('ec', { namedCurve: 'P-256' }), kid: `es-${randomUUID()}`, alg: 'ES256', use: 'sig' },
      { ...pair('ed25519'), kid: `ed-${randomUUID()}`, alg: 'EdDSA', use: 'sig' },
    ],
  };
}

let jwks;
const keysFile = process.env.OIDC_KEYS;
if (keysFile && fs.existsSync(keysFile)) {
  jwks = JSON.parse(fs.readFileSync(keysFile, 'utf8'));
} else {
  jwks = makeKeys();
  if (keysFile) fs.writeFileSync(keysFile, JSON.stringify(jwks), { mode: 0o600 });
}

// Who each client stands for: its name's first part.
const USERS = {
  ada: { preferred_username: 'ada', roles: ['lab:write', 'offline_access'] },
  root: { preferred_username: 'oidc-root', roles: ['tessera-admin'] },
  mallory: { preferred_username: 'Mallory@Example.org', roles: [] },
};

const clients = [];
for (const user of Object.keys(USERS)) {
  for (const alg of Object.keys(ALGS)) {
    const id = `${user}-${alg}`;
    clients.push({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    });
  }
}

const provider = new Provider(issuer, {
  clients,
  jwks,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:tessera:api',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => {
        if (resource !== 'urn:tessera:api' && resource !== 'urn:other:api') {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'api',
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: ALGS[client.clientId.split('-').pop()] } },
        };
      },
    },
  },
  extraTokenClaims: (ctx, token) => {
    const user = USERS[String(token.clientId).split('-')[0]];
    if (!user) return undefined;
    return {
      preferred_username: user.preferred_username,
      realm_access: { roles: user.roles },
    };
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
