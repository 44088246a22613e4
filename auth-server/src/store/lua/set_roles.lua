-- Replaces a user's roles (operator command); never creates a user. Bumps the user's version,
-- so that a login that read the old roles and races this drops its session (it re-reads the
-- version once its session is stored); the caller then ends the user's sessions.
-- KEYS[1] user:{<username>}
-- ARGV    roles (JSON array)
-- Returns the user's id when set, nil when there is no such user.
-- Slot: {<username>} (one key).
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return false end
redis.call('HSET', KEYS[1], 'roles', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return id
