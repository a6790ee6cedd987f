"""The Lua scripts that make lease fencing, checkpoint commits and audio appends atomic.

Every script gets the same KEYS, all in the session's hash-tag slot (``keys.SessionKeys``), so a
script never touches a key it was not passed (a Redis Cluster requirement):

    KEYS[1] lease   KEYS[2] record   KEYS[3] fence   KEYS[4] version   KEYS[5] history   KEYS[6] audio

KEYS[2..6] live as long as the session: every script that a live owner runs gives them the
session TTL again. The lease has its own, shorter TTL.

A lease is *valid* for token T when the lease hash holds token T. ``renew`` also restores a lease
that merely expired while nobody acquired since (the fence counter still equals T): a generator
cut off from Redis for longer than the lease TTL keeps its session unless another took over.

Refusals are error replies whose first word the store maps to an exception:
``FENCED`` (FencedError), ``NOSESSION`` (SessionNotFound), ``AUDIOSEQ`` (AudioOrderError),
``STALE`` (a newer checkpoint was committed first).
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "APPEND_AUDIO",
    "AUDIOSEQ",
    "BEGIN_CHECKPOINT",
    "COMMIT_CHECKPOINT",
    "FENCED",
    "NOSESSION",
    "RELEASE",
    "RENEW",
    "STALE",
]

FENCED = "FENCED"
NOSESSION = "NOSESSION"
AUDIOSEQ = "AUDIOSEQ"
STALE = "STALE"

_PRELUDE = """
local function refresh(ttl_ms)
  for i = 2, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ttl_ms)
  end
end
local function fenced(token)
  local current = redis.call('HGET', KEYS[1], 'token')
  if current == token then
    return nil
  end
  if not current then
    current = 'none (expired or released)'
  end
  return redis.error_reply('FENCED lease token ' .. token .. ' is not the current one: ' .. current)
end
"""

# ARGV: owner, lease_ttl_ms, session_ttl_ms -> {token, previous owner or ''}
ACQUIRE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('NOSESSION no session record (never created, deleted or expired)')
end
local previous = redis.call('HGET', KEYS[1], 'owner') or ''
local token = redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
refresh(ARGV[3])
return {token, previous}
"""
)

# ARGV: token, owner, lease_ttl_ms, session_ttl_ms -> the history (manifests, newest first)
RENEW = (
    _PRELUDE
    + """
local current = redis.call('HGET', KEYS[1], 'token')
if current ~= ARGV[1] then
  if current or redis.call('GET', KEYS[3]) ~= ARGV[1] then
    return fenced(ARGV[1])
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'token', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
refresh(ARGV[4])
return redis.call('LRANGE', KEYS[5], 0, -1)
"""
)

# ARGV: token, owner, lease_ttl_ms, session_ttl_ms, record JSON -> 1
# After Redis lost the session (a restart without persistence, or expiry while cut off): the
# owner puts its record, fence and lease back, unless a newer token exists (then FENCED). Tokens
# stay monotonic: of two owners that both reinstate, the one with the newer token wins.
REINSTATE = (
    _PRELUDE
    + """
local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
if fence > tonumber(ARGV[1]) then
  return fenced(ARGV[1])
end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SET', KEYS[2], ARGV[5], 'NX')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'token', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
refresh(ARGV[4])
return 1
"""
)

# ARGV: token, first entry id to drop -> entries dropped
# The audio log after a gap is useless for replay: the new owner drops it and moves the stream's
# last id back, so the client's resent chunks from the gap on can be logged again.
TRUNCATE_AUDIO = (
    _PRELUDE
    + """
local err = fenced(ARGV[1])
if err then
  return err
end
if redis.call('EXISTS', KEYS[6]) == 0 then
  return 0
end
local dropped = 0
while true do
  local entries = redis.call('XRANGE', KEYS[6], ARGV[2], '+', 'COUNT', 1000)
  if #entries == 0 then
    break
  end
  for _, entry in ipairs(entries) do
    redis.call('XDEL', KEYS[6], entry[1])
    dropped = dropped + 1
  end
end
local top = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)
local floor = '0-1'
if #top > 0 then
  floor = top[1][1]
end
redis.call('XSETID', KEYS[6], floor)
return dropped
"""
)

# ARGV: token -> 1 if the lease was deleted, 0 if it was not this token's
RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# ARGV: token, session_ttl_ms -> the new checkpoint's version
BEGIN_CHECKPOINT = (
    _PRELUDE
    + """
local err = fenced(ARGV[1])
if err then
  return err
end
local version = redis.call('INCR', KEYS[4])
refresh(ARGV[2])
return version
"""
)

# ARGV: token, manifest JSON, keep_versions, session_ttl_ms, audio MINID or '', version
# -> the manifests that fell out of the history (their parts are the caller's to delete)
COMMIT_CHECKPOINT = (
    _PRELUDE
    + """
local err = fenced(ARGV[1])
if err then
  return err
end
local head = redis.call('LINDEX', KEYS[5], 0)
if head then
  local head_version = cjson.decode(head)['version']
  if head_version >= tonumber(ARGV[6]) then
    return redis.error_reply('STALE version ' .. ARGV[6] .. ' is not newer than the committed ' .. head_version)
  end
end
local keep = tonumber(ARGV[3])
redis.call('LPUSH', KEYS[5], ARGV[2])
local dropped = redis.call('LRANGE', KEYS[5], keep, -1)
redis.call('LTRIM', KEYS[5], 0, keep - 1)
if ARGV[5] ~= '' then
  redis.call('XTRIM', KEYS[6], 'MINID', ARGV[5])
end
refresh(ARGV[4])
return dropped
"""
)

# ARGV: token, entry id, data, session_ttl_ms -> the entry id
APPEND_AUDIO = (
    _PRELUDE
    + """
local err = fenced(ARGV[1])
if err then
  return err
end
local added = redis.pcall('XADD', KEYS[6], ARGV[2], 'd', ARGV[3])
if type(added) == 'table' and added['err'] then
  if string.find(added['err'], 'equal or smaller', 1, true) then
    return redis.error_reply('AUDIOSEQ ' .. added['err'])
  end
  return redis.error_reply(added['err'])  -- OOM (maxmemory) and the like, as Redis said them
end
refresh(ARGV[4])
return added
"""
)
