package mpauthx

import "github.com/redis/go-redis/v9"

// The Lua scripts that make each token operation one atomic step. Each
// touches one key, so they run unchanged on Redis Cluster. Redis interns
// Lua strings, so the equality test in revokeScript costs the same whatever
// the session's content.

// issueScript returns the live session of KEYS[1], or stores ARGV[1] there
// with a TTL of ARGV[2] ms and returns it. A key somehow left without TTL
// gets one. A key holding something other than a string (not written by
// mpauthx) is no session, as IsTokenValid and RevokeToken see it: it is
// replaced, so that the user can log in.
var issueScript = redis.NewScript(issueScriptSource)

// issueScriptSource is issueScript's Lua, sent with EVAL when Redis does
// not have it cached.
const issueScriptSource = `
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' and cur.err then
  redis.call('DEL', KEYS[1])
elseif cur then
  if redis.call('PTTL', KEYS[1]) == -1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`

// revokeScript deletes KEYS[1] if it still holds session ARGV[1]. A key
// holding something other than a string holds no session: nothing to do.
var revokeScript = redis.NewScript(`
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' and cur.err then
  return 0
end
if cur == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
