-- Rotation, reuse grace and reuse detection of a refresh token, in one atomic step; at most
-- a number of rotations per window for one session (grace replays are not rotations), and
-- only the most recent spent digests kept, so one session's footprint is bounded.
-- KEYS[1] sess:{<sid>}   KEYS[2] spent:{<sid>} (sorted set: digest -> rotation number)
-- ARGV    presented digest, successor digest, grace (ms), refresh TTL (ms), max age (ms),
--         sealed successor, spent digests kept, rotations allowed per window, window (ms),
--         access-token lifetime (s), verifier leeway (s), deadline (ms, Redis time; 0: none)
-- Returns {'rotated', uid, username, name, roles, scope, created_ms, rotated_ms}
--       | {'replay', uid, username, name, roles, scope, created_ms, sealed successor, rotated_ms}
--       | {'limited', ms until the window ends} (nothing changed: the token stays current)
--       | {'reuse', uid, until} (a spent token: the session is marked revoked, as by
--          mark_session.lua, for the caller to publish and then delete)
--       | {'revoked', uid, until} (marked before and a token of it presented: its end is not
--          complete, publish again)
--       | {'expired', uid} (session deleted) | {'unknown'}
--       | {'late'} (run after the deadline: its caller has given up; nothing changed)
-- Time: Redis TIME (grace, max age, the window and the rotation time all on one clock).
-- Slot: {<sid>} (both keys).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A call its caller abandoned (it answered 503) must not run after the client's retries: it
-- would present a token they have rotated past, and that is reuse.
local deadline = tonumber(ARGV[12])
if deadline > 0 and now > deadline then return {'late'} end
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'rotated_ms', 'created_ms', 'succ',
  'uid', 'username', 'name', 'roles', 'scope', 'n', 'win', 'win_n', 'revoked')
if not s[1] then return {'unknown'} end
if s[14] then
  -- Marked revoked, its end not complete: a token of it has the revocation published again.
  if ARGV[1] == s[1] or ARGV[1] == s[2] or redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    return {'revoked', s[6], s[14]}
  end
  return {'unknown'}
end
local ends = tonumber(s[4]) + tonumber(ARGV[5])
if now >= ends then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'expired', s[6]}
end
local name = s[8] or ''
if ARGV[1] == s[1] then
  local window, allowed = tonumber(ARGV[9]), tonumber(ARGV[8])
  local win, win_n = tonumber(s[12] or '0'), tonumber(s[13] or '0')
  if now - win >= window then win, win_n = now, 0 end
  if win_n >= allowed then return {'limited', win + window - now} end
  local stamp = string.format('%d', now)
  local n = tonumber(s[11] or '0') + 1
  redis.call('HSET', KEYS[1], 'prev', s[1], 'cur', ARGV[2], 'rotated_ms', stamp, 'succ', ARGV[6],
    'n', n, 'win', string.format('%d', win), 'win_n', win_n + 1)
  redis.call('ZADD', KEYS[2], n, ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[7]) + 1))
  local ttl = math.min(tonumber(ARGV[4]), ends - now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {'rotated', s[6], s[7], name, s[9], s[10], s[4], stamp}
end
local grace = tonumber(ARGV[3])
if s[2] and s[2] ~= '' and ARGV[1] == s[2] and grace > 0 and now - tonumber(s[3]) <= grace then
  return {'replay', s[6], s[7], name, s[9], s[10], s[4], s[5], s[3]}
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  -- Reuse: mark, never delete here, so that the session is published before it is gone.
  local issued_ms = math.max(tonumber(s[4]), tonumber(s[3] or '0'))
  local until_s = math.floor(issued_ms / 1000) + tonumber(ARGV[10]) + tonumber(ARGV[11])
  local stamp = string.format('%d', until_s)
  redis.call('HSET', KEYS[1], 'revoked', stamp, 'revoked_ms', string.format('%d', now))
  local keep = until_s * 1000 - now
  if keep > redis.call('PTTL', KEYS[1]) then
    redis.call('PEXPIRE', KEYS[1], keep)
    redis.call('PEXPIRE', KEYS[2], keep)
  end
  return {'reuse', s[6], stamp}
end
return {'unknown'}
