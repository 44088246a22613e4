-- Replaces a user's roles (operator command); never creates a user.
-- KEYS[1] user:{<username>}
-- ARGV    roles (JSON array)
-- Returns 1 when set, 0 when there is no such user.
-- Slot: {<username>} (one key).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'roles', ARGV[1])
return 1
