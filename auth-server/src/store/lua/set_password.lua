-- A password change: replaces the user's argon2id hash, only for the user the caller's session
-- belongs to, and bumps the user's version (a login with the old password racing this drops
-- its session); the caller then ends the user's other sessions.
-- KEYS[1] user:{<username>}
-- ARGV    the user's id, the new PHC string
-- Returns 1 when changed, 0 when there is no such user (or it has another id).
-- Slot: {<username>} (one key).
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'phc', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1
