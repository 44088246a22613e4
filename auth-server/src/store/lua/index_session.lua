-- Step 1 of a login's session: adds the sid to its user's index (before the session exists,
-- so that no session is ever out of reach of logout everywhere) and returns the user's
-- logout-everywhere generation, which the login checks again once the session is stored.
-- KEYS[1] usess:{<uid>}   KEYS[2] ugen:{<uid>}
-- ARGV    sid, index TTL (ms: the session max age, renewed by every login)
-- Returns the generation (0 when the user never logged out everywhere).
-- Slot: {<uid>} (both keys).
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return tonumber(redis.call('GET', KEYS[2]) or '0')
