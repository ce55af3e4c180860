// Lua scripts: every state change of a request is one atomic script. Each is safe
// to run twice (ioredis re-sends commands that were unanswered when a connection
// dropped), because each checks the record's state before changing it.

/**
 * KEYS[1] owned set of this instance, KEYS[2..] one request key per entry.
 * ARGV: now, ttl ms, owner, then per entry: id, fingerprint, model, version, payload.
 * Returns per entry: 1 when newly accepted, else {state, fingerprint, owner, code, content type, body}.
 */
export const ACCEPT = `
local now, ttl, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 2, #KEYS do
  local a = 4 + (i - 2) * 5
  local key = KEYS[i]
  local found = redis.call('HMGET', key, 'state', 'fp', 'owner', 'code', 'ctype', 'body')
  if found[1] then
    out[#out + 1] = { found[1], found[2] or '', found[3] or '', found[4] or '', found[5] or '', found[6] or '' }
  else
    redis.call('HSET', key, 'id', ARGV[a], 'state', 'queued', 'fp', ARGV[a + 1], 'model', ARGV[a + 2], 'version', ARGV[a + 3],
      'payload', ARGV[a + 4], 'owner', owner, 'attempts', 0, 'created', now, 'updated', now)
    redis.call('PEXPIRE', key, ttl)
    redis.call('ZADD', KEYS[1], now, ARGV[a])
    out[#out + 1] = 1
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return out
`

/**
 * KEYS: one request key per entry. ARGV: now, ttl ms, owned-set prefix, channel prefix,
 * then per entry: id, state, code, content type, body.
 * First write wins: a final record is never overwritten. Returns per entry 1 (stored),
 * 0 (already final) or -1 (no such request).
 */
export const COMPLETE = `
local now, ttl, ownedPrefix, channelPrefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
for i = 1, #KEYS do
  local a = 5 + (i - 1) * 5
  local key = KEYS[i]
  local found = redis.call('HMGET', key, 'state', 'owner')
  if not found[1] then
    out[i] = -1
  elseif found[1] == 'done' or found[1] == 'failed' then
    out[i] = 0
  else
    redis.call('HSET', key, 'state', ARGV[a + 1], 'code', ARGV[a + 2], 'ctype', ARGV[a + 3], 'body', ARGV[a + 4], 'updated', now)
    redis.call('HDEL', key, 'payload')
    redis.call('PEXPIRE', key, ttl)
    if found[2] then redis.call('ZREM', ownedPrefix .. found[2], ARGV[a]) end
    redis.call('PUBLISH', channelPrefix .. ARGV[a], ARGV[a + 1])
    out[i] = 1
  end
end
return out
`

/**
 * Gives requests this instance can no longer finish to the fleet: each pending one
 * becomes `handed_off`, leaves its owner's set and is appended to the replay stream.
 * KEYS: one request key per entry, then the replay stream. ARGV: now, owned-set prefix,
 * reason, then the ids. Returns the number handed off (already final or already
 * handed off: skipped, so a re-sent call changes nothing).
 */
export const HAND_OFF = `
local now, ownedPrefix, reason = ARGV[1], ARGV[2], ARGV[3]
local stream = KEYS[#KEYS]
local count = 0
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local id = ARGV[3 + i]
  local found = redis.call('HMGET', key, 'state', 'owner')
  if found[1] == 'queued' or found[1] == 'running' or found[1] == 'replaying' then
    if found[2] then redis.call('ZREM', ownedPrefix .. found[2], id) end
    redis.call('HSET', key, 'state', 'handed_off', 'owner', '', 'updated', now, 'reason', reason)
    redis.call('XADD', stream, '*', 'id', id, 'reason', reason)
    count = count + 1
  end
end
return count
`
