-- Extends a lock only for its holder (compare-and-pexpire).
-- KEYS[1] the lock (here: lock:{key-rotation})
-- ARGV[1] the holder's token; ARGV[2] the new TTL (ms)
-- Returns 1 when it was extended, 0 when another holder has it or it had expired.
-- Time: none (the lock's TTL is Redis's). Slot: that of KEYS[1].
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
