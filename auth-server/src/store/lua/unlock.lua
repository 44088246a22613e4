-- Releases a lock only for its holder (compare-and-delete).
-- KEYS[1] the lock (here: lock:{key-rotation})
-- ARGV[1] the holder's token (random per attempt to take it)
-- Returns 1 when it was released, 0 when another holder has it or it had expired.
-- Time: none (the lock's TTL is Redis's). Slot: that of KEYS[1].
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
