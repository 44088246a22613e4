-- Registration: stores a user unless the username is taken (atomic, so a name is never
-- registered twice).
-- KEYS[1] user:{<username>}
-- ARGV    id, username, name ('' for none), phc, roles (JSON array)
-- Returns 1 when stored (or already stored with this id: a repeated call), 0 when the username
-- is taken.
-- Time: Redis TIME (`created`, Unix seconds). Slot: {<username>} (one key).
local id = redis.call('HGET', KEYS[1], 'id')
if id then
  if id == ARGV[1] then return 1 end
  return 0
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'username', ARGV[2], 'name', ARGV[3],
  'phc', ARGV[4], 'roles', ARGV[5], 'created', t[1])
return 1
