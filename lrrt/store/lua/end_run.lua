-- A run ended. KEYS: job, lease prefix. ARGV: run, token, outcome_json, abandon (a stop reason that
-- also ends every run not started yet, or ''), now_ts. Returns 'last' (every run has ended: the caller
-- finishes the job) | 'confirm' (the range test is over: every arm's first confirm round is queued now
-- and the caller sends their messages) | 'round' (the run ended its arm's confirm round: the arm's next
-- round is queued now, the caller sends its messages) | 'more' | 'lost' (another runner holds the run)
-- | 'gone' (the job ended).
local p = 'run:' .. ARGV[1] .. ':'
if redis.call('HGET', KEYS[1], p .. 'token') ~= ARGV[2] then return 'lost' end
redis.call('DEL', KEYS[2] .. ':' .. ARGV[1])
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 'gone' end
redis.call('HSET', KEYS[1], p .. 'state', 'ended', p .. 'outcome', ARGV[3])
local n = tonumber(redis.call('HGET', KEYS[1], 'runs') or '1')
local first = tonumber(redis.call('HGET', KEYS[1], 'sweep_runs') or n)
local all, sweep_over = true, true
local open = {} -- 'arm:round' -> every confirm run of that round has ended
for r = 0, n - 1 do
  local q = 'run:' .. r .. ':'
  local st = redis.call('HGET', KEYS[1], q .. 'state')
  if st ~= 'ended' and ARGV[4] ~= '' and (not st or st == 'queued' or st == 'waiting') then
    redis.call('HSET', KEYS[1], q .. 'state', 'ended', q .. 'outcome', cjson.encode({stop_reason = ARGV[4]}))
    st = 'ended'
  end
  if st ~= 'ended' then
    all = false
    if r < first then sweep_over = false end
  end
  if r >= first then
    local gate = redis.call('HGET', KEYS[1], q .. 'arm') .. ':' .. redis.call('HGET', KEYS[1], q .. 'round')
    open[gate] = (open[gate] ~= false) and st == 'ended'
  end
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
if all then return 'last' end
if not sweep_over then return 'more' end
local released = nil
for r = first, n - 1 do
  local q = 'run:' .. r .. ':'
  if redis.call('HGET', KEYS[1], q .. 'state') == 'waiting' then
    local round = tonumber(redis.call('HGET', KEYS[1], q .. 'round'))
    if round == 0 or open[redis.call('HGET', KEYS[1], q .. 'arm') .. ':' .. (round - 1)] then
      redis.call('HSET', KEYS[1], q .. 'state', 'queued', q .. 'released_at', ARGV[5])
      released = (round == 0) and 'confirm' or 'round'
    end
  end
end
return released or 'more'
