-- One registration attempt from a client address (fixed window from the first attempt).
-- KEYS[1] throttle:register:addr:{<address>}
-- ARGV    max attempts, window (ms)
-- Returns 0, or the ms to wait when over the limit.
-- Slot: {<address>} (one key).
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
if n > tonumber(ARGV[1]) then return ttl end
return 0
