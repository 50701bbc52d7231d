-- Requeue the runs of a running job whose lease expired. KEYS: job, lease prefix, running.
-- ARGV: max_attempts, job_id, now_ts, grace_s. Returns {'gone'} or a flat list of outcome, run pairs
-- ('requeued' | 'exhausted') for each such run ({} when every run is alive), and one 'resend' pair per
-- confirm run released over grace_s ago and never claimed: the process that released it may have died
-- before it sent its message (once per run; a spare message finds nothing to claim).
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return {'gone'}
end
local out = {}
local n = tonumber(redis.call('HGET', KEYS[1], 'runs') or '1')
for r = 0, n - 1 do
  local st = redis.call('HGET', KEYS[1], 'run:' .. r .. ':state')
  if st == 'running' and redis.call('EXISTS', KEYS[2] .. ':' .. r) == 0 then
    out[#out + 1] = requeue_run(KEYS[1], r, tonumber(ARGV[1]))
    out[#out + 1] = tostring(r)
  end
end
for r = tonumber(redis.call('HGET', KEYS[1], 'sweep_runs') or n), n - 1 do
  local q = 'run:' .. r .. ':'
  local at = tonumber(redis.call('HGET', KEYS[1], q .. 'released_at') or '0')
  if at > 0 and tonumber(ARGV[3]) - at > tonumber(ARGV[4]) and redis.call('HGET', KEYS[1], q .. 'state') == 'queued'
     and redis.call('HGET', KEYS[1], q .. 'attempts') == false and redis.call('HGET', KEYS[1], q .. 'resent') ~= '1' then
    redis.call('HSET', KEYS[1], q .. 'resent', '1')
    out[#out + 1] = 'resend'; out[#out + 1] = tostring(r)
  end
end
settle(KEYS[1], KEYS[3], ARGV[2])
return out
