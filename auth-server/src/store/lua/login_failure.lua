-- A verified login failure (wrong password, or a username that does not exist) in one
-- throttling bucket: counts it and, at the bucket's limit, locks the bucket out for the first
-- lockout, doubled at each further lockout up to the cap; the count starts again after each
-- lockout. Failures are remembered for the window after the last one (or the lockout's end).
-- KEYS[1] throttle:login:pair:{<username>}:<address> | throttle:login:user:{<username>}
--         | throttle:login:addr:{<address>}    (a hash: fails, locks, until)
-- ARGV    limit, first lockout (ms), longest lockout (ms), window (ms)
-- Returns the lockout this failure started (ms), 0 when none.
-- Time: Redis TIME. Slot: that of KEYS[1] (one key).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max, first, cap, window =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = redis.call('HINCRBY', KEYS[1], 'fails', 1)
local wait = 0
if n >= max then
  local locks = redis.call('HINCRBY', KEYS[1], 'locks', 1)
  wait = first
  for _ = 2, locks do
    wait = wait * 2
    if wait >= cap then break end
  end
  if wait > cap then wait = cap end
  redis.call('HSET', KEYS[1], 'until', now + wait, 'fails', 0)
end
local locked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0') - now
if locked < 0 then locked = 0 end
redis.call('PEXPIRE', KEYS[1], locked + window)
return wait
