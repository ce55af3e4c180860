// Lease times come from Redis's own clock, so instances whose clocks disagree
// still agree on which leases have expired.
const REDIS_NOW = `
local function redisNow()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// Lua scripts: every state change of a request is one atomic script. Each is safe
// to run twice (ioredis re-sends commands that were unanswered when a connection
// dropped), because each checks the record's state before changing it.

/**
 * KEYS[1] owned set of this instance, KEYS[2] leases, KEYS[3..] one request key per entry.
 * ARGV: now, ttl ms, owner, lease ttl ms, then per entry: id, fingerprint, model, version, payload.
 * Returns per entry: 1 when newly accepted, else {state, fingerprint, owner, code, content type, body, header length}.
 * The owner's lease is created if missing, so no owned request is ever outside a lease.
 */
export const ACCEPT = REDIS_NOW + `
local now, ttl, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3]
redis.call('ZADD', KEYS[2], 'NX', redisNow() + tonumber(ARGV[4]), owner)
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], math.max(ttl, tonumber(ARGV[4]) * 10)) end
local out = {}
for i = 3, #KEYS do
  local a = 5 + (i - 3) * 5
  local key = KEYS[i]
  local found = redis.call('HMGET', key, 'state', 'fp', 'owner', 'code', 'ctype', 'body', 'hlen')
  if found[1] then
    out[#out + 1] = { found[1], found[2] or '', found[3] or '', found[4] or '', found[5] or '', found[6] or '', found[7] or '' }
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
 * then per entry: id, state, code, content type, body, binary header length ('' for JSON).
 * First write wins: a final record is never overwritten. Returns per entry 1 (stored),
 * 0 (already final) or -1 (no such request).
 */
export const COMPLETE = `
local now, ttl, ownedPrefix, channelPrefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
for i = 1, #KEYS do
  local a = 5 + (i - 1) * 6
  local key = KEYS[i]
  local found = redis.call('HMGET', key, 'state', 'owner')
  if not found[1] then
    out[i] = -1
  elseif found[1] == 'done' or found[1] == 'failed' then
    out[i] = 0
  else
    redis.call('HSET', key, 'state', ARGV[a + 1], 'code', ARGV[a + 2], 'ctype', ARGV[a + 3], 'body', ARGV[a + 4], 'hlen', ARGV[a + 5], 'updated', now)
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
 * reason, stream ttl ms, the calling instance, '1' when the hand-off is clean (a drain:
 * the attempt of a replay in progress is given back), then the ids. Only the caller's
 * own requests move: one a peer took over after this instance's lease lapsed stays
 * with that peer. Returns the number handed off (already final or already
 * handed off: skipped, so a re-sent call changes nothing).
 */
export const HAND_OFF = `
local now, ownedPrefix, reason, me, refund = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local stream = KEYS[#KEYS]
local count = 0
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local id = ARGV[6 + i]
  local found = redis.call('HMGET', key, 'state', 'owner', 'attempts')
  if (found[1] == 'queued' or found[1] == 'running' or found[1] == 'replaying') and found[2] == me then
    redis.call('ZREM', ownedPrefix .. me, id)
    if refund == '1' and found[1] == 'replaying' and tonumber(found[3] or '0') > 0 then redis.call('HINCRBY', key, 'attempts', -1) end
    redis.call('HSET', key, 'state', 'handed_off', 'owner', '', 'updated', now, 'reason', reason)
    redis.call('XADD', stream, '*', 'id', id, 'reason', reason)
    count = count + 1
  end
end
redis.call('PEXPIRE', stream, ARGV[4])
return count
`

/**
 * Renews this instance's lease. KEYS[1] leases. ARGV: instance, lease ttl ms, key ttl ms.
 * Returns 1 when the previous lease was still valid, 0 when there was none (first
 * start, or it expired and a peer may have taken this instance's work) or it had lapsed.
 */
export const RENEW_LEASE = REDIS_NOW + `
local now = redisNow()
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if previous and tonumber(previous) >= now then return 1 end
return 0
`

/**
 * Takes over the unfinished work of instances whose lease expired. Atomic, so of
 * several peers racing exactly one moves each dead instance's requests.
 * KEYS[1] leases, KEYS[2] replay stream. ARGV: the caller's time (unused: expiry is judged by
 * Redis's clock), owned-set prefix, request-key prefix, stream ttl ms.
 * Returns {instances taken over, requests moved to the replay stream}.
 */
export const REAP_DEAD = REDIS_NOW + `
local now, ownedPrefix, requestPrefix = redisNow(), ARGV[2], ARGV[3]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
local moved = 0
for _, instance in ipairs(dead) do
  redis.call('ZREM', KEYS[1], instance)
  local owned = ownedPrefix .. instance
  for _, id in ipairs(redis.call('ZRANGE', owned, 0, -1)) do
    local key = requestPrefix .. id
    local state = redis.call('HGET', key, 'state')
    if state == 'queued' or state == 'running' or state == 'replaying' then
      redis.call('HSET', key, 'state', 'handed_off', 'owner', '', 'updated', now, 'reason', 'lease_expired')
      redis.call('XADD', KEYS[2], '*', 'id', id, 'reason', 'lease_expired')
      redis.call('PEXPIRE', KEYS[2], ARGV[4])
      moved = moved + 1
    end
  end
  redis.call('DEL', owned)
end
return { #dead, moved }
`

/**
 * Claims one replay stream entry for this instance.
 * KEYS[1] request key, KEYS[2] leases, KEYS[3] replay stream.
 * ARGV: now, instance, max attempts, owned-set prefix, group, entry id, request id.
 * Returns {'skip'} (already final, held by a live instance, or already being replayed
 * here: a duplicate entry, acked without counting an attempt), {'exhausted', attempts,
 * last error} or {'claimed', payload, fingerprint, attempts, handed-off at}.
 */
export const CLAIM_REPLAY = REDIS_NOW + `
local now, me, maxAttempts, ownedPrefix, group, entry, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local found = redis.call('HMGET', KEYS[1], 'state', 'owner', 'attempts', 'payload', 'fp', 'updated', 'error')
local state, holder = found[1], found[2] or ''
local function skip()
  redis.call('XACK', KEYS[3], group, entry)
  redis.call('XDEL', KEYS[3], entry)
  return { 'skip' }
end
if not state or state == 'done' or state == 'failed' or not found[4] then return skip() end
if state == 'replaying' and holder == me then return skip() end
if state ~= 'handed_off' and holder ~= '' then
  local lease = redis.call('ZSCORE', KEYS[2], holder)
  if lease and tonumber(lease) > redisNow() then return skip() end
end
local attempts = tonumber(found[3] or '0') + 1
if attempts > maxAttempts then return { 'exhausted', attempts - 1, found[7] or '' } end
if holder ~= '' then redis.call('ZREM', ownedPrefix .. holder, id) end
redis.call('HSET', KEYS[1], 'state', 'replaying', 'owner', me, 'attempts', attempts, 'updated', now)
redis.call('ZADD', ownedPrefix .. me, now, id)
return { 'claimed', found[4], found[5] or '', attempts, found[6] or now }
`
