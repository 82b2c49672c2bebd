package mpauthx

import "github.com/redis/go-redis/v9"

// The Lua scripts that make each token operation one atomic step. Each
// touches one key, so they run unchanged on Redis Cluster. Redis interns
// Lua strings, so the equality test in revokeScript costs the same whatever
// the session's content.

// issueScript returns the live session of KEYS[1], or stores ARGV[1] there
// with a TTL of ARGV[2] ms and returns it. A key somehow left without TTL
// gets one.
var issueScript = redis.NewScript(issueScriptSource)

// issueScriptSource is issueScript's Lua, sent with EVAL when Redis does
// not have it cached.
const issueScriptSource = `
local cur = redis.call('GET', KEYS[1])
if cur then
  if redis.call('PTTL', KEYS[1]) == -1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`

// revokeScript deletes KEYS[1] if it still holds session ARGV[1].
var revokeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
