-- Step 2 of ending sessions: publishes them on the revocation list (after step 1 marked them
-- revoked in their own slots, before step 3 deletes them), drops entries whose `until` has
-- passed, and trims the stream to its retention, remembering the newest id trimmed away (a
-- cursor older than that can no longer be served and gets the whole list).
-- KEYS[1] rev:stream:{revocations} (stream: d = sid digest, u = until)
-- KEYS[2] rev:list:{revocations} (sorted set: sid digest -> until, Unix s)
-- KEYS[3] rev:meta:{revocations} (hash: epoch, trimmed)
-- ARGV    epoch (random; kept only when the list has none yet), stream retention (ms), then
--         pairs of sid digest, until (Unix s, computed in the session's slot)
-- Returns {epoch, id of the newest entry ('0-0' when none), entries in the list}.
-- Time: Redis TIME (what has passed, what to trim). Slot: {revocations} (all three keys).
-- Every key is checked before the first write: a script error does not roll back what it
-- wrote, and a publication must be all or nothing.
local kinds = {'stream', 'zset', 'hash'}
for i = 1, 3 do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= kinds[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. kind)
  end
end
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('HGET', KEYS[3], 'epoch') then
  redis.call('HSET', KEYS[3], 'epoch', ARGV[1])
end
for i = 3, #ARGV - 1, 2 do
  local digest, until_s = ARGV[i], ARGV[i + 1]
  -- A session whose every access token is past `until` needs no entry: none can pass. One
  -- listed already with this `until` or a later one needs none either (a re-publication):
  -- its stream entry is still there (the stream is kept at least as long as any `until`),
  -- so a token presented again and again cannot grow the stream.
  local listed = redis.call('ZSCORE', KEYS[2], digest)
  if tonumber(until_s) >= now_s and not (listed and tonumber(listed) >= tonumber(until_s)) then
    redis.call('ZADD', KEYS[2], 'GT', until_s, digest)
    redis.call('XADD', KEYS[1], '*', 'd', digest, 'u', until_s)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now_s))
local min_id = string.format('%d', now_ms - tonumber(ARGV[2])) .. '-0'
local gone = redis.call('XREVRANGE', KEYS[1], '(' .. min_id, '-', 'COUNT', 1)
if #gone > 0 then
  redis.call('HSET', KEYS[3], 'trimmed', gone[1][1])
  redis.call('XTRIM', KEYS[1], 'MINID', min_id)
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local head = redis.call('HGET', KEYS[3], 'trimmed') or '0-0'
if #newest > 0 then head = newest[1][1] end
return {redis.call('HGET', KEYS[3], 'epoch'), head, redis.call('ZCARD', KEYS[2])}
