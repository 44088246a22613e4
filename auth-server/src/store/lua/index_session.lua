-- Step 1 of a login's session: adds the sid to its user's index (before the session exists,
-- so that no session is ever out of reach of logout everywhere), forgets index entries older
-- than the max age (those sessions have ended), and returns the user's logout-everywhere
-- generation, which the login checks again once the session is stored, and the oldest sids
-- beyond the per-user limit, which the caller ends and then removes from the index.
-- KEYS[1] usess:{<uid>} (sorted set: sid -> login time, ms)   KEYS[2] ugen:{<uid>}
-- ARGV    sid, max age (ms: also the index's TTL, renewed by every login), sessions per user
-- Returns {generation (0 when the user never logged out everywhere), evicted sid...}.
-- Time: Redis TIME. Slot: {<uid>} (both keys).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_age, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - max_age)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], max_age)
local reply = {tonumber(redis.call('GET', KEYS[2]) or '0')}
local excess = redis.call('ZCARD', KEYS[1]) - limit
if excess > 0 then
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
    reply[#reply + 1] = sid
  end
end
return reply
