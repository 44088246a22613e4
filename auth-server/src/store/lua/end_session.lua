-- Logout: ends a session, but only for a token of it (current, just rotated, or one of the
-- spent digests kept), so that knowing a sid (it is in every access token) is not enough.
-- KEYS[1] sess:{<sid>}   KEYS[2] spent:{<sid>}
-- ARGV    presented digest
-- Returns the session's uid when it was ended, else nil.
-- Slot: {<sid>} (both keys).
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'uid')
if not s[1] then return false end
if ARGV[1] == s[1] or ARGV[1] == s[2] or redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return s[3]
end
return false
