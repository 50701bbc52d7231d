-- A run ended. KEYS: job, lease prefix. ARGV: run, token, outcome_json, abandon (a stop reason that
-- also ends every run not started yet, or ''), now_ts. Returns 'last' (every run has ended: the caller
-- finishes the job) | 'confirm' (the range test is over: its waiting confirm runs are queued now and the
-- caller sends their messages) | 'more' | 'lost' (another runner holds the run) | 'gone' (the job ended).
local p = 'run:' .. ARGV[1] .. ':'
if redis.call('HGET', KEYS[1], p .. 'token') ~= ARGV[2] then return 'lost' end
redis.call('DEL', KEYS[2] .. ':' .. ARGV[1])
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 'gone' end
redis.call('HSET', KEYS[1], p .. 'state', 'ended', p .. 'outcome', ARGV[3])
local n = tonumber(redis.call('HGET', KEYS[1], 'runs') or '1')
local first = tonumber(redis.call('HGET', KEYS[1], 'sweep_runs') or n)
local all, sweep_over, waiting = true, true, false
for r = 0, n - 1 do
  local q = 'run:' .. r .. ':'
  local st = redis.call('HGET', KEYS[1], q .. 'state')
  if st ~= 'ended' then
    if ARGV[4] ~= '' and (not st or st == 'queued' or st == 'waiting') then
      redis.call('HSET', KEYS[1], q .. 'state', 'ended', q .. 'outcome', cjson.encode({stop_reason = ARGV[4]}))
    else
      all = false
      if r < first then sweep_over = false end
      if st == 'waiting' then waiting = true end
    end
  end
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
if all then return 'last' end
if sweep_over and waiting then
  for r = first, n - 1 do
    if redis.call('HGET', KEYS[1], 'run:' .. r .. ':state') == 'waiting' then
      redis.call('HSET', KEYS[1], 'run:' .. r .. ':state', 'queued')
    end
  end
  redis.call('HSET', KEYS[1], 'confirm_at', ARGV[5])
  return 'confirm'
end
return 'more'
