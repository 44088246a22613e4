-- Takes back the failure a login attempt counted: the username's count is cleared on a
-- success (ARGV[1] = 'clear') or decremented (a refused hash), the address's decremented.
-- KEYS[1] throttle:login:user:{<username>} (unused when ARGV[2] is not 1)
-- KEYS[2] throttle:login:addr:{<address>}
-- ARGV    'clear' | 'undo', 1 when KEYS[1] is used
-- Returns 1.
-- Slots: {<username>} and {<address>}: two slots, fine on one Redis only.
local function undo(key)
  if tonumber(redis.call('HGET', key, 'fails') or '0') > 0 then
    redis.call('HINCRBY', key, 'fails', -1)
  end
end
if ARGV[2] == '1' then
  if ARGV[1] == 'clear' then redis.call('DEL', KEYS[1]) else undo(KEYS[1]) end
end
undo(KEYS[2])
return 1
