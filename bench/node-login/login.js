// The login of the Node.js original (npm mpauthx 1.3.2, whose code npm no
// longer serves), for comparison with mpauthx-bench's logins on the same
// machine, against the same fake WeChat. This is our harness, not the
// original's code: authorize() below performs the original's steps, in its
// order, on the packages it used (redis 2.8 callbacks, one connection; the
// sqlite3 package), for each login:
//
//   1. GET code2session with Node's http module (the original's
//      net/request.js: http(s).get, the default agent), JSON.parse;
//   2. decrypt encryptedData with the session key (WXBizDataCrypt:
//      AES-128-CBC, JSON.parse, the watermark's appid checked);
//   3. the openids of 1 and 2 compared;
//   4. redis KEYS "<openid>|<sku>|*": a live token found is returned;
//   5. sqlite SELECT * FROM user WHERE openId LIKE '<openid>';
//   6. INSERT INTO user (openId) when no row was found;
//   7. a token "<openid>|<sku>|sha256hex(timestamp + 6 random chars)",
//      stored with HMSET <token> ctime <timestamp>;
//   8. EXPIRE <openid> (the original's bug: the token itself never
//      expires), not awaited.
//
// Differences, each in the original's favour or neutral: the login code is
// URL-escaped in step 1 (the fake's codes hold '+', '/' and '=' on purpose;
// the original pasted WeChat's alphanumeric codes as they were); the
// original's console.log lines (several per login) are left out.
//
//   npm ci && node login.js -fake PATH [-redis host:port] [-sqlite default|wal] [-users 2000] [-prefill 0] [-concurrency 64]
//
// PATH is an mpauthx-bench binary (go build -o PATH ./cmd/mpauthx-bench):
// the harness runs "PATH -fake-wechat", the fake WeChat and users of
// mpauthx-bench's own logins phase, and stops it at the end. As in
// mpauthx-bench, CONCURRENCY users log in first, untimed, then USERS users
// log in, CONCURRENCY at a time, each with a fresh code. With -prefill N,
// N other live tokens of the original's layout are written first. The
// user table is a new SQLite file of the original's schema in a temporary
// directory: with -sqlite default (the default), as the original's users
// opened it, new sqlite3.Database(path) with the package's defaults (a
// rollback journal, synchronous=FULL: every INSERT is a transaction that
// waits for the disk); with -sqlite wal, with mpauthx.OpenSQLite's
// settings instead (journal_mode=WAL, synchronous=NORMAL), so that the
// two sides write with the same durability.
//
// Prints one JSON line (logins: count, per second, p50/p99/max latency in
// µs, this process's CPU time per login in µs, failures, wrong answers) and exits 1 if any login failed or answered
// wrongly. It deletes every Redis key it wrote, and the SQLite file.
'use strict';
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const redis = require('redis');
const sqlite3 = require('sqlite3');

const keyTTL = 1800; // seconds: bounds the keys of a killed run (the original set none)

function flags(argv) {
  const o = { fake: '', redis: '127.0.0.1:6379', sqlite: 'default', users: 2000, prefill: 0, concurrency: 64 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^-+/, ''), v = argv[i + 1];
    const usage = `usage: node login.js -fake PATH [-redis host:port] [-sqlite default|wal] [-users n] [-prefill n] [-concurrency n]; bad flag ${argv[i]} ${v ?? ''}`;
    if (!Object.hasOwn(o, k) || v === undefined) throw new Error(usage);
    if (k === 'sqlite' && v !== 'default' && v !== 'wal') throw new Error(usage);
    if (k === 'redis' || k === 'fake' || k === 'sqlite') { o[k] = v; continue; }
    const n = Number(v);
    if (!Number.isInteger(n) || n < (k === 'prefill' ? 0 : 1)) throw new Error(usage);
    o[k] = n;
  }
  if (!o.fake) throw new Error('-fake PATH (an mpauthx-bench binary) is required');
  return o;
}

// getJSON is the original's request.getJsonAsync for http URLs.
function getJSON(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`HTTP ${res.statusCode}`));
      }
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(chunks.join('')));
        } catch (e) {
          reject(e);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

// decryptData is what WXBizDataCrypt.decryptData does.
function decryptData(appId, sessionKey, encryptedData, iv) {
  const decipher = crypto.createDecipheriv('aes-128-cbc', Buffer.from(sessionKey, 'base64'), Buffer.from(iv, 'base64'));
  decipher.setAutoPadding(true);
  let decoded = decipher.update(Buffer.from(encryptedData, 'base64'), 'binary', 'utf8');
  decoded += decipher.final('utf8');
  decoded = JSON.parse(decoded);
  if (decoded.watermark.appid !== appId) throw new Error('Illegal Buffer');
  return decoded;
}

// randomString is the original's util.generateRandomString.
function randomString(n) {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < n; i++) s += chars.charAt(Math.floor(Math.random() * chars.length));
  return s;
}

function generateToken(openId, sku, timestamp) {
  const session = crypto.createHash('sha256').update(timestamp + randomString(6)).digest('hex');
  return openId + '|' + sku + '|' + session;
}

// newAuthorize returns the original's authorize(code, encryptedData, iv),
// resolving to the token.
function newAuthorize({ apiBase, appid, secret, sku, rc, db, written }) {
  return (code, encryptedData, iv) => new Promise((resolve, reject) => {
    if (code == null || encryptedData == null || iv == null) return reject(new Error('missing parameter'));
    getJSON(`${apiBase}/sns/jscode2session?appid=${appid}&secret=${secret}&js_code=${encodeURIComponent(code)}&grant_type=authorization_code`)
      .then((jsonRes) => {
        const onlineOpenId = jsonRes.openid;
        const data = decryptData(appid, jsonRes.session_key, encryptedData, iv);
        const offlineOpenId = data.openId;
        if (onlineOpenId !== offlineOpenId) return reject(new Error('OpenID not match'));
        rc.keys(`${offlineOpenId}|${sku}|*`, (err, replies) => {
          if (err) return reject(err);
          if (replies.length > 0) return resolve(replies[0]);
          db.all(`SELECT * FROM user WHERE openId LIKE '${offlineOpenId}'`, (e, rows) => {
            if (e) return reject(e);
            const issue = () => {
              const timestamp = Date.now();
              const token = generateToken(offlineOpenId, sku, timestamp);
              written.push(token);
              rc.hmset(token, { ctime: timestamp }, (e) => {
                if (e) return reject(e);
                rc.expire(offlineOpenId, keyTTL);
                resolve(token);
              });
            };
            if (rows.length === 0) {
              db.run(`INSERT INTO user (openId) values ('${onlineOpenId}')`, (e) => (e ? reject(e) : issue()));
            } else if (rows.length === 1) {
              issue();
            } else {
              reject(new Error('Unknown error after finding user record from db'));
            }
          });
        });
      })
      .catch(reject);
  });
}

// loginAll logs users in, concurrency at a time, and returns the phase's
// figures.
async function loginAll(authorize, users, concurrency, sku) {
  const lat = [];
  let next = 0, failures = 0, wrong = 0;
  const start = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const worker = async () => {
    while (next < users.length) {
      const u = users[next++];
      const t0 = process.hrtime.bigint();
      try {
        const token = await authorize(u.code, u.encryptedData, u.iv);
        if (!token.startsWith(u.openid + '|' + sku + '|')) wrong++;
      } catch (e) {
        if (failures++ === 0) process.stderr.write(`node-login: a login failed: ${e.message}\n`);
      }
      lat.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  const q = (p) => Math.round(lat[Math.max(Math.ceil(p * lat.length), 1) - 1] * 10) / 10;
  return {
    count: lat.length, per_sec: Math.round(lat.length / seconds),
    p50_us: q(0.5), p99_us: q(0.99), max_us: q(1),
    // This process's CPU time per login (the fake WeChat runs in another).
    cpu_us_per_call: Math.round((cpu.user + cpu.system) / lat.length * 10) / 10,
    failures, wrong,
  };
}

// startFake runs "bin -fake-wechat" and returns it with the line it
// printed.
function startFake(bin) {
  const child = spawn(bin, ['-fake-wechat'], { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${bin} -fake-wechat exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).once('line', (line) => resolve({ child, info: JSON.parse(line) }));
  });
}

function call(fn, ...args) {
  return new Promise((resolve, reject) => fn(...args, (e, r) => (e ? reject(e) : resolve(r))));
}

// unlink deletes keys, 1000 a command.
async function unlink(rc, keys) {
  for (let i = 0; i < keys.length; i += 1000) await call(rc.del.bind(rc), keys.slice(i, i + 1000));
}

async function main() {
  const o = flags(process.argv.slice(2));
  const { child, info } = await startFake(o.fake);
  child.removeAllListeners('exit');
  const [host, port] = o.redis.split(':');
  const rc = redis.createClient({ host, port: Number(port) });
  rc.on('error', () => {}); // reported by the command that failed
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-login-'));
  const db = new sqlite3.Database(path.join(dir, 'users.db'));
  const sku = 'bench-' + crypto.randomBytes(5).toString('hex');
  const written = [];
  const prefilled = [];
  let report;
  try {
    if (o.sqlite === 'wal') await call(db.exec.bind(db), 'PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL');
    // The original's user table.
    await call(db.exec.bind(db), 'CREATE TABLE user(openId text primary key not null, city text, country text, gender integer, language text, nickName text, province text)');
    for (let i = 0; i < o.prefill; i += 1000) {
      const b = rc.batch();
      for (let j = i; j < Math.min(i + 1000, o.prefill); j++) {
        const k = `obench-prefill-${j}|${sku}|${crypto.randomBytes(32).toString('hex')}`;
        prefilled.push(k);
        b.hmset(k, { ctime: Date.now() });
        b.expire(k, keyTTL);
      }
      await call(b.exec.bind(b));
    }
    const warm = (await getJSON(`${info.users_url}?n=${o.concurrency}`)).users;
    const users = (await getJSON(`${info.users_url}?n=${o.users}`)).users;
    const authorize = newAuthorize({ apiBase: info.api_base, appid: info.appid, secret: info.secret, sku, rc, db, written });
    const warmed = await loginAll(authorize, warm, o.concurrency, sku);
    if (warmed.failures + warmed.wrong > 0) throw new Error(`warm-up: ${warmed.failures + warmed.wrong} of ${warm.length} logins failed`);
    const logins = await loginAll(authorize, users, o.concurrency, sku);
    report = {
      harness: 'node-login', redis: o.redis, sku, node: process.version,
      packages: { redis: require('redis/package.json').version, sqlite3: require('sqlite3/package.json').version },
      sqlite: o.sqlite, users: o.users, prefill: o.prefill, concurrency: o.concurrency, logins,
    };
  } finally {
    child.stdin.end();
    await unlink(rc, written.concat(prefilled)).catch((e) => process.stderr.write(`node-login: cleanup: ${e.message}\n`));
    rc.quit();
    await call(db.close.bind(db)).catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(report));
  if (report.logins.failures + report.logins.wrong > 0) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`node-login: ${e.stack || e}\n`);
  process.exit(1);
});
