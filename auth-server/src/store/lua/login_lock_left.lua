-- What is left of one throttling bucket's lockout (reads only).
-- KEYS[1] a throttle:login:* bucket (here: throttle:login:addr:{<address>})
-- ARGV    none
-- Returns the lockout left (ms), 0 when not locked.
-- Time: Redis TIME. Slot: that of KEYS[1].
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local u = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if u > now then return u - now end
return 0
