-- Move a job that no worker has claimed yet to another queue (an `auto` job whose backend lost every
-- worker). KEYS: job. ARGV: from_queue, to_queue, backend, backend_reason (the new routing choice). Returns 1, or 0 when the job was claimed, ended or
-- moved meanwhile (its runs may have started on the first backend: a job's runs never mix backends).
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' or redis.call('HGET', KEYS[1], 'queue') ~= ARGV[1]
   or tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'queue', ARGV[2], 'backend', ARGV[3], 'backend_reason', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
