// A bench-only proxy-wasm host in Node (V8, the engine Envoy runs the .wasm in):
// loads a certbound .wasm, configures it, issues one bound token through the
// token flow (request and response hooks, as Envoy calls them) and then drives
// N bound-token requests on a protected route, timing them. Without Envoy
// around it, what it measures is certbound's own code in V8 plus the host
// calls' crossings, and `node --cpu-prof` names the Wasm functions (build
// without `strip`, e.g. CARGO_PROFILE_RELEASE_STRIP=false), which perf cannot
// do inside Envoy.
//
//   node benches/wasm-host/run.mjs target/certbound.wasm [requests]
//
// Prints one JSON line: microseconds per request (median of 5 rounds), host
// calls per request by name.

import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";

const file = process.argv[2] ?? "target/certbound.wasm";
const N = Number(process.argv[3] ?? 200000);
const enc = new TextEncoder();
const dec = new TextDecoder();

// The client's certificate as Envoy would report it: its SHA-256 digest, hex.
const certDer = createHash("sha512").update("bench client certificate").digest();
const digestHex = createHash("sha256").update(certDer).digest("hex");
const x5t = Buffer.from(digestHex, "hex").toString("base64url");
const config = process.env.NOOP === "1" ? JSON.stringify({ mode: "noop" }) : JSON.stringify({
  clients: [{ client_id: "bench", token_endpoint_auth_method: "self_signed_tls_client_auth", thumbprints: [x5t],
              upstream: { client_secret: "bench-secret" } }],
  protected_routes: [{ path_prefix: "/api/", unbound_tokens: "require_binding" }],
  store: { capacity: 200000 },
});
const token = "pKq3VbI1mD2kQ7xYw8ZtRr5uN0aLs6eF4hGjC9oTzUv";

let mem; let ex;
const shared = new Map(); // key -> {value: Uint8Array, cas}
let casSeq = 1;
let headers = { req: [], resp: [] };
let bodies = { 0: new Uint8Array(), 1: new Uint8Array(), 7: enc.encode(config) };
const properties = {
  "connection\0sha256_peer_certificate_digest": enc.encode(digestHex),
  "source\0address": enc.encode("127.0.0.1:40000"),
};
const calls = {};
let counting = false;
const count = (name) => { if (counting) calls[name] = (calls[name] ?? 0) + 1; };
let localReply = null;

const u8 = () => new Uint8Array(mem.buffer);
const dv = () => new DataView(mem.buffer);
const str = (p, n) => dec.decode(u8().subarray(p, p + n));
const bytes = (p, n) => u8().slice(p, p + n);
function give(data, retPtr, retSize) {
  const p = data.length ? ex.proxy_on_memory_allocate(data.length) : 0;
  if (data.length) u8().set(data, p);
  dv().setUint32(retPtr, p, true);
  dv().setUint32(retSize, data.length, true);
}
function serialize(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), typeof v === "string" ? enc.encode(v) : v]);
  let size = 4 + 8 * parts.length;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size); const d = new DataView(out.buffer);
  d.setUint32(0, parts.length, true);
  parts.forEach(([k, v], i) => { d.setUint32(4 + 8 * i, k.length, true); d.setUint32(8 + 8 * i, v.length, true); });
  let o = 4 + 8 * parts.length;
  for (const [k, v] of parts) { out.set(k, o); o += k.length + 1; out.set(v, o); o += v.length + 1; }
  return out;
}
function deserialize(p, n) {
  const d = dv(); const count = d.getUint32(p, true); const out = [];
  let o = p + 4 + 8 * count;
  for (let i = 0; i < count; i++) {
    const kl = d.getUint32(p + 4 + 8 * i, true), vl = d.getUint32(p + 8 + 8 * i, true);
    out.push([str(o, kl), str(o + kl + 1, vl)]); o += kl + vl + 2;
  }
  return out;
}
const mapOf = (t) => (t === 0 ? headers.req : headers.resp);
// Envoy serializes a header map in C++; here the request's map is serialized once and kept until
// the filter changes it, so the host's own cost stays out of the numbers.
const serialized = new Map();
function pairsOf(t) {
  const m = mapOf(t);
  let s = serialized.get(m);
  if (!s) { s = serialize(m); serialized.set(m, s); }
  return s;
}
// A map the filter changes is copied first (the caller's array is reused by every request).
function changed(t) {
  if (t === 0) headers.req = headers.req.slice(); else headers.resp = headers.resp.slice();
}

const env = {
  proxy_log: (level, p, n) => { count("log"); if (level >= 4 || process.env.LOGS) console.error("wasm log", level, str(p, n)); return 0; },
  proxy_get_log_level: (ret) => { dv().setUint32(ret, 2, true); return 0; },
  proxy_get_current_time_nanoseconds: (ret) => { count("now"); dv().setBigUint64(ret, BigInt(Date.now()) * 1000000n, true); return 0; },
  proxy_set_tick_period_milliseconds: () => 0,
  proxy_get_shared_data: (kp, kn, rp, rn, rc) => {
    count("get_shared_data");
    const e = shared.get(str(kp, kn)); if (!e) return 1;
    give(e.value, rp, rn); dv().setUint32(rc, e.cas, true); return 0;
  },
  proxy_set_shared_data: (kp, kn, vp, vn, cas) => {
    count("set_shared_data");
    const k = str(kp, kn); const e = shared.get(k);
    if (cas && e && e.cas !== cas) return 8;
    shared.set(k, { value: bytes(vp, vn), cas: casSeq++ }); return 0;
  },
  proxy_define_metric: (t, p, n, ret) => { dv().setUint32(ret, casSeq++, true); return 0; },
  proxy_increment_metric: () => { count("increment_metric"); return 0; },
  proxy_record_metric: () => { count("record_metric"); return 0; },
  proxy_get_header_map_pairs: (t, rp, rn) => { count("get_header_map_pairs"); give(pairsOf(t), rp, rn); return 0; },
  proxy_set_header_map_pairs: (t, p, n) => { count("set_header_map_pairs"); changed(t); const m = mapOf(t); m.length = 0; m.push(...deserialize(p, n)); return 0; },
  proxy_get_header_map_value: (t, kp, kn, rp, rn) => {
    count("get_header_map_value");
    const k = str(kp, kn); const h = mapOf(t).find(([n]) => n === k); if (!h) return 1;
    give(enc.encode(h[1]), rp, rn); return 0;
  },
  proxy_replace_header_map_value: (t, kp, kn, vp, vn) => {
    count("replace_header_map_value"); changed(t);
    const m = mapOf(t); const k = str(kp, kn); const v = str(vp, vn);
    for (let i = m.length - 1; i >= 0; i--) if (m[i][0] === k) m.splice(i, 1);
    m.push([k, v]); return 0;
  },
  proxy_add_header_map_value: (t, kp, kn, vp, vn) => { count("add_header_map_value"); changed(t); mapOf(t).push([str(kp, kn), str(vp, vn)]); return 0; },
  proxy_remove_header_map_value: (t, kp, kn) => {
    count("remove_header_map_value"); changed(t);
    const m = mapOf(t); const k = str(kp, kn);
    for (let i = m.length - 1; i >= 0; i--) if (m[i][0] === k) m.splice(i, 1);
    return 0;
  },
  proxy_get_buffer_bytes: (t, start, max, rp, rn) => {
    count("get_buffer_bytes");
    const b = bodies[t]; if (!b) return 1; give(b.subarray(start, start + max), rp, rn); return 0;
  },
  proxy_set_buffer_bytes: (t, start, size, p, n) => { count("set_buffer_bytes"); bodies[t] = bytes(p, n); return 0; },
  proxy_get_property: (p, n, rp, rn) => {
    count("get_property");
    const v = properties[str(p, n)]; if (!v) return 1; give(v, rp, rn); return 0;
  },
  proxy_set_property: () => { count("set_property"); return 0; },
  proxy_send_local_response: (status, dp, dn, bp, bn) => { count("send_local_response"); localReply = { status, body: str(bp, bn) }; return 0; },
  proxy_continue_stream: () => 0,
  proxy_close_stream: () => 0,
  proxy_http_call: () => { throw new Error("no callouts in this bench"); },
  proxy_get_status: () => 1, proxy_grpc_cancel: () => 1, proxy_grpc_close: () => 1, proxy_grpc_send: () => 1,
  proxy_dequeue_shared_queue: () => 1, proxy_register_shared_queue: () => 1,
  proxy_set_effective_context: () => 0, proxy_done: () => 0,
};
const wasi = {
  random_get: (p, n) => { u8().fill(7, p, p + n); return 0; },
  environ_get: () => 0,
  environ_sizes_get: (c, s) => { dv().setUint32(c, 0, true); dv().setUint32(s, 0, true); return 0; },
  fd_write: () => 0,
  proc_exit: (c) => { throw new Error(`proc_exit ${c}`); },
};

const module = new WebAssembly.Module(readFileSync(file));
// Whatever else the SDK imports (the no-op module keeps more of it) answers "not found".
for (const i of WebAssembly.Module.imports(module)) if (i.module === "env" && !(i.name in env)) env[i.name] = () => 1;
  else if (i.module === "wasi_snapshot_preview1" && !(i.name in wasi)) wasi[i.name] = () => 52; // ENOSYS
const instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
ex = instance.exports; mem = ex.memory;
ex._initialize?.();
ex.proxy_on_context_create(1, 0);
if (!ex.proxy_on_vm_start(1, 0)) throw new Error("vm_start refused");
if (!ex.proxy_on_configure(1, bodies[7].length)) throw new Error("configure refused");

let next = 2;
function stream(reqHeaders, reqBody, respHeaders, respBody) {
  const id = next++;
  headers = { req: reqHeaders, resp: [] };
  localReply = null;
  ex.proxy_on_context_create(id, 1);
  let a = ex.proxy_on_request_headers(id, reqHeaders.length, reqBody ? 0 : 1);
  if (reqBody) { bodies[0] = enc.encode(reqBody); a = ex.proxy_on_request_body(id, bodies[0].length, 1); }
  if (!localReply) {
    headers.resp = respHeaders;
    ex.proxy_on_response_headers(id, respHeaders.length, respBody ? 0 : 1);
    if (respBody) { bodies[1] = enc.encode(respBody); ex.proxy_on_response_body(id, bodies[1].length, 1); }
  }
  ex.proxy_on_done(id); ex.proxy_on_log(id); ex.proxy_on_delete(id);
  return { forwarded: headers.req, reply: localReply, body: dec.decode(bodies[1]) };
}

// A Wasm filter that does nothing (benches/wasm, {"mode": "noop"}) gets the same requests, unchecked.
const noop = process.env.NOOP === "1";
// One token: client credentials with the client's certificate; the AS's answer is bound.
const t = stream(
  [[":method", "POST"], [":path", "/oauth2/token"], [":authority", "localhost"], [":scheme", "https"],
   ["content-type", "application/x-www-form-urlencoded"], ["content-length", "45"]],
  "grant_type=client_credentials&client_id=bench",
  [[":status", "200"], ["content-type", "application/json; charset=utf-8"]],
  JSON.stringify({ access_token: token, expires_in: 600, token_type: "Bearer", scope: "" }));
if (t.reply && !noop) throw new Error(`token request refused: ${JSON.stringify(t.reply)}`);

const resource = [[":method", "GET"], [":path", "/api/x"], [":authority", "localhost"], [":scheme", "https"],
  ["user-agent", "oha/1.4.7"], ["accept", "*/*"], ["authorization", `Bearer ${token}`],
  ["x-forwarded-proto", "https"], ["x-request-id", "1b2e1f0c-6b0a-4a47-9d7e-2f1e7f9a1c3d"]];
const ok = stream(resource, null, [[":status", "200"], ["content-length", "2"]], null);
if (ok.reply && !noop) throw new Error(`bound token refused: ${JSON.stringify(ok.reply)}`);
const wrong = structuredClone(properties);
properties["connection\0sha256_peer_certificate_digest"] = enc.encode("00".repeat(32));
const bad = stream(resource, null, [[":status", "200"]], null);
if (!noop && (!bad.reply || bad.reply.status !== 401)) throw new Error("a token with another certificate was not refused");
Object.assign(properties, wrong);

counting = true; stream(resource, null, [[":status", "200"], ["content-length", "2"]], null); counting = false;
const rounds = [];
for (let r = 0; r < 5; r++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) stream(resource, null, [[":status", "200"], ["content-length", "2"]], null);
  rounds.push(Number(process.hrtime.bigint() - t0) / 1000 / N);
}
rounds.sort((a, b) => a - b);
console.log(JSON.stringify({ wasm: file, requests_per_round: N, us_per_request: +rounds[2].toFixed(3),
  spread: [+rounds[0].toFixed(3), +rounds[4].toFixed(3)], host_calls: calls }));
