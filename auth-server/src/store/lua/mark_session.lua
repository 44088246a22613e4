-- Step 1 of ending a session: marks it revoked, so that from now on it refuses every token
-- (rotation, logout, the bearer routes, introspection) and issues none, and returns `until`,
-- the last moment one of its access tokens may still be accepted: the newest `iat` it issued
-- (its login or last rotation, Redis time) + the access-token lifetime + the verifier leeway.
-- The caller publishes that (step 2) before deleting the session (step 3); a marked session
-- lives at least until `until`, so a failure between the steps leaves a session that refuses
-- its tokens and is published again when one is presented. Only a token of the session or its
-- owner may mark it: knowing a sid (it is in every access token) is not enough.
-- KEYS[1] sess:{<sid>}   KEYS[2] spent:{<sid>}
-- ARGV    'token' and the presented digest (current, just rotated, or a kept spent one)
--         | 'owner' and the uid the session must belong to;
--         access-token lifetime (s), verifier leeway (s)
-- Returns {uid, until (Unix s)} when marked now or before, else nil.
-- Time: Redis TIME (when marked; `until` is from the session's own stamps). Slot: {<sid>}.
local s = redis.call('HMGET', KEYS[1], 'uid', 'cur', 'prev', 'created_ms', 'rotated_ms', 'revoked')
if not s[1] then return false end
if ARGV[1] == 'token' then
  if not (ARGV[2] == s[2] or ARGV[2] == s[3] or redis.call('ZSCORE', KEYS[2], ARGV[2])) then
    return false
  end
elseif ARGV[1] ~= 'owner' or ARGV[2] ~= s[1] then
  return false
end
if s[6] then return {s[1], s[6]} end
local issued_ms = math.max(tonumber(s[4]), tonumber(s[5] or '0'))
local until_s = string.format('%d', math.floor(issued_ms / 1000) + tonumber(ARGV[3]) + tonumber(ARGV[4]))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'revoked', until_s, 'revoked_ms', string.format('%d', now))
local keep = tonumber(until_s) * 1000 - now
if keep > redis.call('PTTL', KEYS[1]) then
  redis.call('PEXPIRE', KEYS[1], keep)
  redis.call('PEXPIRE', KEYS[2], keep)
end
return {s[1], until_s}
