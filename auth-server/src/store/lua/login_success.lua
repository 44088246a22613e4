-- A successful login: clears the pair's failures and remembers the address as known for the
-- user (the most recent ones only, each for a lifetime after its last login).
-- KEYS[1] uaddr:{<username>} (a sorted set: address bucket -> last login, ms)
-- KEYS[2] throttle:login:pair:{<username>}:<address>
-- ARGV    address bucket, how many addresses to keep, known-address lifetime (ms)
-- Returns 1.
-- Time: Redis TIME. Slot: {<username>} (both keys).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep, lifetime = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lifetime)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(keep + 1))
redis.call('PEXPIRE', KEYS[1], lifetime)
return 1
