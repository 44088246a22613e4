-- A password change: replaces the user's argon2id hash, only for the user the caller's session
-- belongs to, and bumps the user's version (a login with the old password racing this drops
-- its session); the caller then ends the user's other sessions.
-- KEYS[1] user:{<username>}
-- ARGV    the user's id, the new PHC string
-- Returns the time of the change (ms, Redis time: sessions logged in before it are the ones to
-- end), or nil when there is no such user (or it has another id).
-- Time: Redis TIME. Slot: {<username>} (one key).
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'phc', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local t = redis.call('TIME')
return string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
