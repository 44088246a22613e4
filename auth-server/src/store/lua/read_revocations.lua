-- GET /revocations (reads only): what was published after a cursor or, when the cursor cannot
-- be served (none, another epoch, older than the newest id trimmed away, newer than the
-- newest entry), the whole current list.
-- KEYS[1] rev:stream:{revocations}   KEYS[2] rev:list:{revocations}   KEYS[3] rev:meta:{revocations}
-- ARGV    cursor epoch ('' for none), cursor id ('' for none), most entries after the cursor
--         to return, '1' to return the whole list on a reset ('0': the head only)
-- Returns {'reset', epoch, head id, entries in the list, digest, until, ...}
--       | {'delta', epoch, id of the last entry read (the cursor when none), entries in the
--          list, id, digest, until, ...}
--         (epoch '0' when nothing was ever published; entries past their until left out).
-- Time: Redis TIME (entries whose until passed are left out). Slot: {revocations}.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local epoch = redis.call('HGET', KEYS[3], 'epoch') or '0'
local trimmed = redis.call('HGET', KEYS[3], 'trimmed') or '0-0'
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local head = trimmed
if #newest > 0 then head = newest[1][1] end
local size = redis.call('ZCOUNT', KEYS[2], now_s, '+inf')

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local function before(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end

local cursor = parse(ARGV[2])
if ARGV[1] == epoch and cursor and not before(cursor, parse(trimmed))
    and not before(parse(head), cursor) then
  local reply = {'delta', epoch, ARGV[2], size}
  local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', tonumber(ARGV[3]))
  for _, entry in ipairs(entries) do
    reply[3] = entry[1]
    local fields, digest, until_s = entry[2], nil, nil
    for i = 1, #fields - 1, 2 do
      if fields[i] == 'd' then digest = fields[i + 1] elseif fields[i] == 'u' then until_s = fields[i + 1] end
    end
    if digest and until_s and tonumber(until_s) >= now_s then
      reply[#reply + 1] = entry[1]
      reply[#reply + 1] = digest
      reply[#reply + 1] = until_s
    end
  end
  return reply
end
local reply = {'reset', epoch, head, size}
if ARGV[4] == '1' then
  local list = redis.call('ZRANGEBYSCORE', KEYS[2], now_s, '+inf', 'WITHSCORES')
  for i = 1, #list do reply[#reply + 1] = list[i] end
end
return reply
