// The token check of the Node.js original, for comparison with
// mpauthx-bench on the same machine: ioredis on one connection, 64 async
// loops each awaiting one GET at a time for SECONDS, over USERS keys
// holding a session. With autopipelining (as the original's client did),
// ioredis sends the GETs issued in one tick as one pipeline.
//
//   npm ci && node check.js [-redis host:port] [-seconds 5] [-users 2000] [-concurrency 64]
//
// Prints one JSON line per mode (autopipelining off, then on). It writes
// USERS keys under "mpauthx-ioredis-check:" and deletes them at the end.
'use strict';
const crypto = require('node:crypto');
const Redis = require('ioredis');

function flags(argv) {
  const o = { redis: '127.0.0.1:6379', seconds: 5, users: 2000, concurrency: 64 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^-+/, ''), v = argv[i + 1];
    const usage = `usage: node check.js [-redis host:port] [-seconds s] [-users n] [-concurrency n]; bad flag ${argv[i]} ${v ?? ''}`;
    if (!Object.hasOwn(o, k) || v === undefined) throw new Error(usage);
    if (k === 'redis') { o.redis = v; continue; }
    const n = Number(v);
    if (!(n > 0) || (k !== 'seconds' && !Number.isInteger(n))) throw new Error(usage);
    o[k] = n;
  }
  return o;
}

async function run(o, autopipelining) {
  const [host, port] = o.redis.split(':');
  const r = new Redis({ host, port: Number(port), enableAutoPipelining: autopipelining, lazyConnect: true });
  await r.connect();
  const keys = [], want = [];
  const prefix = 'mpauthx-ioredis-check:' + crypto.randomBytes(6).toString('hex') + ':';
  for (let i = 0; i < o.users; i++) {
    keys.push(prefix + i);
    want.push(crypto.randomBytes(16).toString('base64url').slice(0, 26));
  }
  const p = r.pipeline();
  keys.forEach((k, i) => p.set(k, want[i], 'EX', 600));
  await p.exec();
  let n = 0, wrong = 0, stop = false;
  const timer = setTimeout(() => { stop = true; }, o.seconds * 1000);
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: o.concurrency }, async (_, g) => {
    for (let i = Math.floor(g * o.users / o.concurrency); !stop; i++) {
      const j = i % o.users;
      if ((await r.get(keys[j])) !== want[j]) wrong++;
      n++;
    }
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  clearTimeout(timer);
  const d = r.pipeline();
  keys.forEach(k => d.del(k));
  await d.exec();
  r.disconnect();
  return { client: 'ioredis ' + require('ioredis/package.json').version, node: process.version, autopipelining, concurrency: o.concurrency, users: o.users, seconds: o.seconds, checks: n, per_sec: Math.round(n / secs), wrong };
}

(async () => {
  const o = flags(process.argv.slice(2));
  for (const ap of [false, true]) {
    const res = await run(o, ap);
    console.log(JSON.stringify(res));
    if (res.wrong > 0) process.exitCode = 1;
  }
})().catch(e => { console.error(e.message); process.exit(1); });
