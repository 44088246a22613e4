-- Before a login's password check (reads only): the user, whether this address has logged
-- the user in before, and what is left of the pair's and the username's lockouts.
-- KEYS[1] user:{<username>}                       KEYS[2] uaddr:{<username>}
-- KEYS[3] throttle:login:user:{<username>}        KEYS[4] throttle:login:pair:{<username>}:<address>
-- ARGV    address bucket, known-address lifetime (ms)
-- Returns {pair lockout left (ms), username lockout left (ms), 1 if the address is known else 0,
--          id, username, name, phc, roles, disabled, ver} (the user's fields nil when there is
--          no user).
-- Time: Redis TIME. Slot: {<username>} (all four keys).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function left(key)
  local u = tonumber(redis.call('HGET', KEYS[key], 'until') or '0')
  if u > now then return u - now end
  return 0
end
local seen = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
local known = 0
if seen > 0 and now - seen < tonumber(ARGV[2]) then known = 1 end
local u = redis.call('HMGET', KEYS[1], 'id', 'username', 'name', 'phc', 'roles', 'disabled', 'ver')
return {left(4), left(3), known, u[1], u[2], u[3], u[4], u[5], u[6], u[7]}
