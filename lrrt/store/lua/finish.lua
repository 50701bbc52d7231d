-- Move an unfinished job to a terminal state and store its result, atomically. KEYS: job,
-- tenant_unfinished, running, lease prefix, cancel, result, events, curves. ARGV: status, finished_at,
-- error_json, ttl, token, expected ('queued' | 'running' | 'any'), result_json ('' keeps none).
-- With a token, a running job can only be finished by a current runner of one of its runs. Returns 1 or 0.
local status = redis.call('HGET', KEYS[1], 'status')
if not status or (status ~= 'queued' and status ~= 'running') then return 0 end
if ARGV[6] ~= 'any' and status ~= ARGV[6] then return 0 end
local n = tonumber(redis.call('HGET', KEYS[1], 'runs') or '1')
if ARGV[5] ~= '' and status == 'running' then
  local ours = false
  for r = 0, n - 1 do
    if redis.call('HGET', KEYS[1], 'run:' .. r .. ':token') == ARGV[5] then ours = true end
  end
  if not ours then return 0 end
end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'error', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[7] ~= '' then redis.call('SET', KEYS[6], ARGV[7]) end
redis.call('SREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('DEL', KEYS[5])
for r = 0, n - 1 do redis.call('DEL', KEYS[4] .. ':' .. r) end
local ttl = tonumber(ARGV[4])
for _, i in ipairs({1, 6, 7, 8}) do redis.call('EXPIRE', KEYS[i], ttl) end
return 1
