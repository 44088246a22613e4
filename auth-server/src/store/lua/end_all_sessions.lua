-- Step 1 of logout everywhere: bumps the user's generation (a login that indexed its session
-- before this sees the change and drops its session) and returns the indexed sids, which the
-- caller then marks revoked (each in its slot), publishes, deletes and removes from the index.
-- KEYS[1] usess:{<uid>}   KEYS[2] ugen:{<uid>}
-- ARGV    generation TTL (ms: the session max age); optionally a login-time bound (ms, a
--         Redis time a script returned earlier): only sessions logged in at or before it
-- Returns the indexed sids.
-- Slot: {<uid>} (both keys).
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
if ARGV[2] then
  return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
