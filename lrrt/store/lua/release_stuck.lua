-- The watchdog gives up a run it holds: drop the lease, requeue the run. KEYS: job, lease prefix,
-- running. ARGV: run, token, max_attempts, job_id, note_json. Returns 'requeued' | 'exhausted' | 'lost'.
local p = 'run:' .. ARGV[1] .. ':'
if redis.call('HGET', KEYS[1], p .. 'token') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 'lost'
end
redis.call('DEL', KEYS[2] .. ':' .. ARGV[1])
redis.call('HSET', KEYS[1], p .. 'stuck', ARGV[5])
local outcome = requeue_run(KEYS[1], ARGV[1], tonumber(ARGV[3]))
if outcome == 'requeued' then settle(KEYS[1], KEYS[3], ARGV[4]) end
return outcome
