-- The packed request record (src/journal/record.ts): byte 1 is 'P' while the request is
-- pending, 'F' once final; bytes 2-44 are the fingerprint; a pending record's owner
-- follows up to the first newline, then the canonical request bytes. What happened to a
-- pending request after its accept (hand-off, replay) lives in its state hash.
local FINGERPRINT_END = 44
local HEAD_BYTES = 512

-- The owner written at accept, from the head of a pending record.
local function recordOwner(head)
  local newline = string.find(head, '\n', FINGERPRINT_END + 1, true)
  return string.sub(head, FINGERPRINT_END + 1, newline - 1), newline
end

-- 'pending', 'final' or nil, reading one byte.
local function recordKind(key)
  local kind = redis.call('GETRANGE', key, 0, 0)
  if kind == 'P' then return 'pending' end
  if kind == 'F' then return 'final' end
  return nil
end

-- A pending request's state and owner: its state hash when a hand-off or a replay
-- changed them, else 'queued' under the owner its record names.
local function pendingState(recordKey, stateKey)
  local found = redis.call('HMGET', stateKey, 'state', 'owner', 'attempts')
  if found[1] then return found[1], found[2] or '', tonumber(found[3] or '0') end
  local owner = recordOwner(redis.call('GETRANGE', recordKey, 0, HEAD_BYTES - 1))
  return 'queued', owner, 0
end
