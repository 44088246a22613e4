-- A login attempt: refuses it if the username or the address is locked out; else counts it as
-- a failure up front (a success takes it back) and locks out past the limit; and fetches the user.
-- KEYS[1] throttle:login:user:{<username>}   KEYS[2] throttle:login:addr:{<address>}
-- KEYS[3] user:{<username>}
-- ARGV    now (ms), user max, address max, first lockout (ms), longest lockout (ms),
--         window (ms), 1 when the username is valid (else KEYS[1] and KEYS[3] are unused)
-- Returns {'locked', wait ms} | {'open', id, username, name, phc, roles} (the user's fields,
--         nil when absent).
-- Slots: KEYS[1] and KEYS[3] share {<username>}; KEYS[2] is in {<address>}: two slots, fine
-- on one Redis only.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[6])
local has_user = ARGV[7] == '1'
local function wait_of(key)
  local u = tonumber(redis.call('HGET', key, 'until') or '0')
  if u > now then return u - now end
  return 0
end
local function fail(key, max)
  local n = redis.call('HINCRBY', key, 'fails', 1)
  local wait = 0
  if n > max then
    local locks = redis.call('HINCRBY', key, 'locks', 1)
    wait = tonumber(ARGV[4])
    local cap = tonumber(ARGV[5])
    for _ = 2, locks do
      wait = wait * 2
      if wait >= cap then break end
    end
    if wait > cap then wait = cap end
    redis.call('HSET', key, 'until', now + wait, 'fails', 0)
  end
  redis.call('PEXPIRE', key, wait + window)
  return wait
end
local wait = wait_of(KEYS[2])
if has_user then wait = math.max(wait, wait_of(KEYS[1])) end
if wait > 0 then return {'locked', wait} end
if has_user then wait = fail(KEYS[1], tonumber(ARGV[2])) end
wait = math.max(wait, fail(KEYS[2], tonumber(ARGV[3])))
if wait > 0 then return {'locked', wait} end
if not has_user then return {'open'} end
local u = redis.call('HMGET', KEYS[3], 'id', 'username', 'name', 'phc', 'roles')
return {'open', u[1], u[2], u[3], u[4], u[5]}
