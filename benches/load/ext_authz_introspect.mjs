// make bench: "how a resource server checks a bound token without certbound".
// Envoy's ext_authz HTTP filter asks this server about every request; it
// introspects the Bearer token at the AS (RFC 7662, keep-alive connections)
// and allows the request only if the token is active and its cnf.x5t#S256
// (RFC 8705 §3.2, the AS's own binding) is the thumbprint of the certificate
// the client presented, which Envoy passes in x-forwarded-client-cert
// (Hash=<hex SHA-256 of the DER>). No cache: every request is one introspection.
//
//   node ext_authz_introspect.mjs <port> <AS introspection URL> <client_id:secret>
// Prints "authorizer ready <port>" when listening.
import http from 'node:http';

const [port, introspectUrl, credentials] = process.argv.slice(2);
const target = new URL(introspectUrl);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const basic = 'Basic ' + Buffer.from(credentials).toString('base64');

function thumbprintOf(xfcc) {
  // The last element is the one this Envoy added; Hash= is the certificate's SHA-256 in hex.
  const last = (xfcc || '').split(',').pop();
  const m = /(?:^|;)Hash=([0-9a-fA-F]{64})/.exec(last);
  return m ? Buffer.from(m[1], 'hex').toString('base64url') : null;
}

function introspect(token) {
  return new Promise((resolve, reject) => {
    const body = 'token=' + encodeURIComponent(token);
    const req = http.request({
      agent, host: target.hostname, port: target.port, path: target.pathname, method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded',
                 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try { resolve(JSON.parse(Buffer.concat(chunks).toString())); } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const server = http.createServer(async (req, res) => {
  req.resume();
  const auth = req.headers.authorization || '';
  const m = /^Bearer\s+(\S+)$/i.exec(auth);
  const x5t = thumbprintOf(req.headers['x-forwarded-client-cert']);
  let allowed = false;
  if (m && x5t) {
    try {
      const answer = await introspect(m[1]);
      allowed = answer.active === true && answer.cnf && answer.cnf['x5t#S256'] === x5t;
    } catch (e) {
      allowed = false;
    }
  }
  res.writeHead(allowed ? 200 : 403, { 'content-length': '0' });
  res.end();
});
server.keepAliveTimeout = 60000;
server.listen(Number(port), '127.0.0.1', () => console.log(`authorizer ready ${port}`));
