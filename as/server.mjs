// The authorization server behind certbound in the demo and the end-to-end
// tests: a real oidc-provider, with no RFC 8705 support switched on, so that
// every binding seen through Envoy is certbound's doing.
//
// Environment:
//   AS_PORT         loopback port to listen on (required)
//   AS_ISSUER       issuer URL (default http://127.0.0.1:$AS_PORT)
//   AS_CLIENTS      path of a JSON file: oidc-provider client metadata array
//   AS_REQUEST_LOG  path of a file that gets one JSON line per request received
//   AS_TOKEN_TTL    access token lifetime in seconds (default 600)
//   AS_NATIVE_MTLS_HEADER  when set, the AS's own RFC 8705 feature binds the
//                  tokens of clients registered with
//                  tls_client_certificate_bound_access_tokens to the URL-encoded
//                  PEM in this header (tests call the AS directly with it, to
//                  get JWT access tokens that carry their own cnf claim)
//
// Prints "as ready <port>" when listening.
import { appendFileSync, readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.AS_PORT);
if (!port) {
  console.error('AS_PORT is required');
  process.exit(2);
}
const issuer = process.env.AS_ISSUER || `http://127.0.0.1:${port}`;
const clients = JSON.parse(readFileSync(process.env.AS_CLIENTS, 'utf8'));
const requestLog = process.env.AS_REQUEST_LOG;
const nativeMtlsHeader = process.env.AS_NATIVE_MTLS_HEADER;
const tokenTtl = Number(process.env.AS_TOKEN_TTL || 600);

// Access tokens for this resource are JWTs (others stay opaque).
const JWT_RESOURCE = 'https://api.certbound.test';

const provider = new Provider(issuer, {
  clients,
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== JWT_RESOURCE) {
          throw new errors.InvalidTarget();
        }
        return { scope: 'api', audience: JWT_RESOURCE, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
    mTLS: {
      enabled: Boolean(nativeMtlsHeader),
      certificateBoundAccessTokens: Boolean(nativeMtlsHeader),
      // The AS's own RFC 8705 client authentication, for the bench's comparison.
      selfSignedTlsClientAuth: Boolean(nativeMtlsHeader),
      getCertificate: (ctx) => {
        const value = nativeMtlsHeader && ctx.get(nativeMtlsHeader);
        return value ? decodeURIComponent(value) : undefined;
      },
    },
  },
  // The demo's paths follow WSO2 Identity Server's.
  routes: {
    token: '/oauth2/token',
    introspection: '/oauth2/introspect',
    authorization: '/oauth2/authorize',
    jwks: '/oauth2/jwks',
    revocation: '/oauth2/revoke',
    userinfo: '/oauth2/userinfo',
  },
  clientAuthMethods: [
    'none',
    'client_secret_basic',
    'client_secret_post',
    ...(nativeMtlsHeader ? ['self_signed_tls_client_auth'] : []),
  ],
  scopes: ['openid', 'offline_access', 'api'],
  // Rotate refresh tokens on every use, so tests see rotated tokens bound again.
  rotateRefreshToken: true,
  // Opaque access tokens are the case an AS without RFC 8705 presents.
  ttl: { ClientCredentials: tokenTtl, AccessToken: tokenTtl },
});
provider.proxy = true;

// Log every request that reaches the AS, so tests can prove which did not.
provider.use(async (ctx, next) => {
  if (requestLog) {
    appendFileSync(
      requestLog,
      `${JSON.stringify({
        method: ctx.method,
        path: ctx.path,
        test_id: ctx.get('x-test-id') || null,
        authorization: ctx.get('authorization') ? ctx.get('authorization').split(' ')[0] : null,
        headers: Object.keys(ctx.headers),
        // What certbound forwarded as the verified certificate (tests configure this name).
        forwarded_cert: ctx.get('x-as-cert') || null,
      })}\n`,
    );
  }
  await next();
});

// RFC 8414 metadata: the same document oidc-provider serves for OpenID discovery.
provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/oauth-authorization-server') {
    ctx.path = '/.well-known/openid-configuration';
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`as ready ${port}`);
});
