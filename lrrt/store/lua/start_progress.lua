-- Store the progress before the first chunk, unless a run of the job already recorded one.
-- KEYS: job. ARGV: progress_json.
if redis.call('HGET', KEYS[1], 'progress') == '' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
