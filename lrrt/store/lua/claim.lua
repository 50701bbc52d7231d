-- Claim the next run of a job for a worker: a queued run first, else a running one whose lease is gone.
-- KEYS: job, lease prefix, running. ARGV: token, lease_ttl, max_attempts, now_iso, now_ts, worker
-- Returns {'claimed', attempts, run} | {'busy'} (every run is taken or ended) | {'skip', status}
--        | {'exhausted', attempts, run} (that run's worker was lost too often; caller fails the job)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'skip', 'missing'} end
if status ~= 'queued' and status ~= 'running' then return {'skip', status} end
local n = tonumber(redis.call('HGET', KEYS[1], 'runs') or '1')
local chosen, orphan = nil, nil
for r = 0, n - 1 do
  local st = redis.call('HGET', KEYS[1], 'run:' .. r .. ':state')
  if not st or st == 'queued' then chosen = r break end
  if st == 'running' and not orphan and redis.call('EXISTS', KEYS[2] .. ':' .. r) == 0 then orphan = r end
end
chosen = chosen or orphan
if not chosen then return {'busy'} end
local p = 'run:' .. chosen .. ':'
local attempts = tonumber(redis.call('HGET', KEYS[1], p .. 'attempts') or '0') + 1
if attempts > tonumber(ARGV[3]) then return {'exhausted', tostring(attempts - 1), tostring(chosen)} end
redis.call('SET', KEYS[2] .. ':' .. chosen, ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], p .. 'state', 'running', p .. 'attempts', attempts, p .. 'token', ARGV[1],
           p .. 'worker', ARGV[6], 'fanned', '1')
if attempts > tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') then
  redis.call('HSET', KEYS[1], 'attempts', attempts)
end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[4], 'started_ts', ARGV[5])
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
-- NX: the job's first claim dates it, so later claims of its other runs never delay reaping a dead one
redis.call('ZADD', KEYS[3], 'NX', ARGV[5], redis.call('HGET', KEYS[1], 'id'))
return {'claimed', tostring(attempts), tostring(chosen)}
