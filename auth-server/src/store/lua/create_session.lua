-- A new session: its hash and its TTL in one atomic step, so the hash never exists without
-- its TTL (a crash cannot leave a session that never expires).
-- KEYS[1] sess:{<sid>}
-- ARGV    uid, username, name ('' for none), roles (JSON array), scope, created (ms),
--         first token digest, TTL (ms)
-- Returns 1.
-- Slot: {<sid>} (one key).
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'username', ARGV[2], 'name', ARGV[3],
  'roles', ARGV[4], 'scope', ARGV[5], 'created_ms', ARGV[6], 'cur', ARGV[7], 'prev', '',
  'rotated_ms', '0', 'succ', '')
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return 1
