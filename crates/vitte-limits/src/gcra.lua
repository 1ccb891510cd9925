-- GCRA over several quotas, all-or-nothing, in one atomic step.
-- The same rules and integer arithmetic as src/gcra.rs (see there).
--
-- KEYS[i]     the TAT of quota i under the caller's key (ms since the epoch)
-- ARGV[1]     now, in ms since the epoch, from the caller's clock
-- ARGV[2i]    quota i's emission interval T, in ms
-- ARGV[2i+1]  quota i's burst tolerance tau, in ms
--
-- Returns 0 when the event is allowed (every TAT was advanced), else the
-- wait in ms (nothing was written).
local now = tonumber(ARGV[1])
local new_tats = {}
local wait = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then
    tat = now
  end
  local quota_wait = tat - tolerance - now
  if quota_wait > 0 then
    if quota_wait > wait then
      wait = quota_wait
    end
  else
    new_tats[i] = tat + interval
  end
end
if wait > 0 then
  return wait
end
for i = 1, #KEYS do
  -- The key lives exactly as long as its TAT is ahead of now: after that it
  -- holds nothing an absent key would not. '%d' keeps integers exact.
  redis.call('SET', KEYS[i], string.format('%d', new_tats[i]),
    'PX', string.format('%d', new_tats[i] - now))
end
return 0
