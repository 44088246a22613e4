-- Disables or enables a user (operator command); never creates a user. Bumps the user's
-- version, so that a login racing a disable drops its session (see set_roles.lua).
-- KEYS[1] user:{<username>}
-- ARGV    '1' to disable, '0' to enable
-- Returns the user's id, nil when there is no such user.
-- Slot: {<username>} (one key).
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return false end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'disabled', '1')
else
  redis.call('HDEL', KEYS[1], 'disabled')
end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return id
