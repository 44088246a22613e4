-- One entry of a session inventory (GET /sessions, `users sessions`), reads only.
-- KEYS[1] sess:{<sid>}
-- ARGV    none
-- Returns {uid, created_ms, rotated_ms, user agent, address, idle expiry (ms, Redis time)},
--         or nil when the session is gone or marked revoked (it has ended).
-- Time: Redis TIME (the idle expiry is now + the key's TTL). Slot: {<sid>} (one key).
local s = redis.call('HMGET', KEYS[1], 'uid', 'created_ms', 'rotated_ms', 'ua', 'net', 'revoked')
if not s[1] or s[6] then return false end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {s[1], s[2], s[3] or '0', s[4] or '', s[5] or '', string.format('%d', now + ttl)}
