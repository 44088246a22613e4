-- A new session: its hash and its TTL in one atomic step, so the hash never exists without
-- its TTL (a crash cannot leave a session that never expires).
-- KEYS[1] sess:{<sid>}
-- ARGV    uid, username, name ('' for none), roles (JSON array), scope, first token digest,
--         TTL (ms), user agent at login ('' for none, at most 256 characters), client network
--         at login ('' for none; a /24 or /48, never the full address)
-- Returns the creation time (ms), which the first access token's iat and the max age use.
-- Time: Redis TIME. Slot: {<sid>} (one key).
local t = redis.call('TIME')
local stamp = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'username', ARGV[2], 'name', ARGV[3],
  'roles', ARGV[4], 'scope', ARGV[5], 'created_ms', stamp, 'cur', ARGV[6], 'prev', '',
  'rotated_ms', '0', 'succ', '', 'ua', ARGV[8], 'net', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return stamp
