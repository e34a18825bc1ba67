// The differential test's Node decoders (tests/decoders/): the npm package qs
// (pinned in package-lock.json; what Express and body-parser's `extended`
// parser use), qs with allowDots, WHATWG URLSearchParams and the querystring
// module. A form body is first decoded as UTF-8 text, as body-parser does.
//
// In:  one case per line, {"id": n, "where": ..., "data": "<base64>", ...}.
// Out: one line per case, {"id": n, "r": {"qs": [[name, value], ...], "qs-dots": ...,
//      "urlsearchparams": ..., "querystring": ...}}: every top-level key, each
//      repeat of a name its own pair. A value that is an array or an object is
//      given as String(value) (['x'] is 'x'), then each string inside it.
'use strict';
const qs = require('qs');
const querystring = require('querystring');
const readline = require('readline');

function leaves(v, out) {
  if (typeof v === 'string') {
    out.push(v);
  } else if (v && typeof v === 'object') {
    for (const k of Object.keys(v)) leaves(v[k], out);
  }
}

function topLevel(obj) {
  const pairs = [];
  for (const k of Object.keys(obj)) {
    const v = obj[k];
    pairs.push([k, String(v)]);
    if (typeof v !== 'string') {
      const l = [];
      leaves(v, l);
      for (const x of l) pairs.push([k, x]);
    }
  }
  return pairs;
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
function flush() {
  if (out.length) {
    process.stdout.write(out.join(''));
    out.length = 0;
  }
}
rl.on('line', (line) => {
  if (!line.trim()) return;
  const c = JSON.parse(line);
  const s = Buffer.from(c.data, 'base64').toString('utf8');
  const r = {
    qs: topLevel(qs.parse(s)),
    'qs-dots': topLevel(qs.parse(s, { allowDots: true })),
    urlsearchparams: [...new URLSearchParams(s)],
    querystring: topLevel(querystring.parse(s)),
  };
  out.push(JSON.stringify({ id: c.id, r }) + '\n');
  if (out.length >= 512) flush();
});
rl.on('close', flush);
