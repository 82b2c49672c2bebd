package mpauthx

import "github.com/redis/go-redis/v9"

// The Lua scripts that make each token operation one atomic step. The
// keys of one script share a hash tag, so they run unchanged on Redis
// Cluster. Redis interns
// Lua strings, so the equality test in revokeScript costs the same whatever
// the session's content.

// sameExpiryLua defines sameExpiry(ttl), which gives KEYS[2] (a sealed
// session key) the expiry of KEYS[1] (its token), ttl ms from now: to the
// millisecond with PEXPIRETIME (Redis 7.0 and later). Before Redis 7.2 the
// clock moves during a script, so a TTL read from KEYS[1] and given to
// KEYS[2] a moment later would let KEYS[2] outlive KEYS[1]; a Redis
// without PEXPIRETIME (before 7.0) gets that TTL, as close as it allows.
const sameExpiryLua = `
local function sameExpiry(ttl)
  local at = redis.pcall('PEXPIRETIME', KEYS[1])
  if type(at) == 'number' and at > 0 then
    redis.call('PEXPIREAT', KEYS[2], at)
  else
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
`

// issueScript returns the live session of KEYS[1], or stores ARGV[1] there
// with a TTL of ARGV[2] ms and returns it. Either way it stores the
// login's sealed session key ARGV[3] in the field ARGV[4] (the AppID) of
// the hash KEYS[2] and gives the hash the session's expiry (see
// sameExpiryLua), so that the user's latest session key of each app lives
// as long as the token; a KEYS[2] of another type is replaced. A key somehow left without TTL gets one. A session in
// the very millisecond it ends (PTTL 0: Redis expires a key only once its
// time has passed) is replaced, since nothing can be stored for 0 ms. A
// key holding something other than a string (not written by mpauthx) is
// no session, as IsTokenValid and RevokeToken see it: it is replaced, so
// that the user can log in. Both keys share the user's hash tag; KEYS[2]
// is left out (see userKeys) when they could not.
var issueScript = redis.NewScript(issueScriptSource)

// issueScriptSource is issueScript's Lua, sent with EVAL when Redis does
// not have it cached.
const issueScriptSource = sameExpiryLua + `
local function keepSessionKey(ttl)
  local r = redis.pcall('HSET', KEYS[2], ARGV[4], ARGV[3])
  if type(r) == 'table' and r.err then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
  end
  sameExpiry(ttl)
end
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' and cur.err then
  redis.call('DEL', KEYS[1])
  cur = false
end
if cur then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = ARGV[2]
  end
  if ttl ~= 0 then
    if KEYS[2] then
      keepSessionKey(ttl)
    end
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] then
  keepSessionKey(ARGV[2])
end
return ARGV[1]
`

// refreshScript stores the session ARGV[1] in KEYS[1] with a TTL of
// ARGV[2] ms, replacing whatever was there, and gives the user's sealed
// session keys KEYS[2] (every app's), if any, the same expiry (see sameExpiryLua).
var refreshScript = redis.NewScript(sameExpiryLua + `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] then
  sameExpiry(ARGV[2])
end
return 1
`)

// revokeScript deletes KEYS[1], and the user's sealed session keys
// KEYS[2] (every app's), if KEYS[1] still holds session ARGV[1]. A key holding
// something other than a string holds no session: nothing to do.
var revokeScript = redis.NewScript(`
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' and cur.err then
  return 0
end
if cur == ARGV[1] then
  if KEYS[2] then
    redis.call('DEL', KEYS[2])
  end
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// forceScript decides whether this instance may force a refresh of the
// app's access token: KEYS[1] is the shared token, KEYS[2] the 30 s
// spacing marker, KEYS[3] the day's count of forced refreshes. It returns
// 0 when KEYS[1] no longer holds ARGV[1] (the rejected token's sealed
// value, "" for none: another instance has replaced it), -1 when a forced
// refresh ran less than ARGV[2] ms ago, -2 when ARGV[3] ran today;
// otherwise it records the forced refresh (the marker for ARGV[2] ms, the
// count kept ARGV[4] ms) and returns 1. The keys share the app's hash tag.
var forceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local n = tonumber(redis.call('GET', KEYS[3]) or '0') or tonumber(ARGV[3])
if n >= tonumber(ARGV[3]) then
  return -2
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
redis.call('SET', KEYS[3], n + 1, 'PX', ARGV[4])
return 1
`)

// shareScript stores the app's access token ARGV[2] in KEYS[1] with a TTL
// of ARGV[3] ms and deletes the last failure KEYS[2], if KEYS[1] still
// holds ARGV[1] (what the writer read when it took the lock; "" for
// none). It returns 1 when it stored the token, 0 when another instance
// wrote meanwhile: a writer that outlived its lock never puts an older
// token over a newer one. The keys share the app's hash tag.
var shareScript = redis.NewScript(`
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
`)

// failScript records a failed refresh of the app's access token, ARGV[2],
// in KEYS[2] for ARGV[3] ms, if KEYS[1] still holds ARGV[1] (the shared
// token as the failed refresh read it: a refresh that outlived its lock
// records nothing over its successor's token). It returns 1 when it
// recorded the failure. The keys share the app's hash tag.
var failScript = redis.NewScript(`
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
`)

// unlockScript deletes the lock KEYS[1] if it still holds ARGV[1], the
// holder's random value: a refresh that outlived its lock leaves the next
// holder's alone.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
