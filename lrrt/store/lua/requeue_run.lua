-- Loaded in front of reap_runs.lua and release_stuck.lua (`lrrt.store.jobs._script`), which call these.
-- Put a run whose worker is gone back in the queue (or report it out of attempts), and the job with it
-- when none of its runs is running or ended. The reaper (lease expired) and the stuck-run watchdog use it.
local function requeue_run(job, r, max_attempts)
  local p = 'run:' .. r .. ':'
  local attempts = tonumber(redis.call('HGET', job, p .. 'attempts') or '0')
  if attempts >= max_attempts then return 'exhausted' end
  redis.call('HSET', job, p .. 'state', 'queued')
  redis.call('HINCRBY', job, 'version', 1)
  return 'requeued'
end
local function settle(job, running, id)
  local n = tonumber(redis.call('HGET', job, 'runs') or '1')
  for r = 0, n - 1 do
    local st = redis.call('HGET', job, 'run:' .. r .. ':state')
    if st == 'running' or st == 'ended' then return end
  end
  redis.call('HSET', job, 'status', 'queued')
  redis.call('ZREM', running, id)
end
