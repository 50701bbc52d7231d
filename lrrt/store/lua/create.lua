-- KEYS: job, tenant_jobs, tenant_unfinished, idem (or "")
-- ARGV: job_id, created_ts, cap, idem_body_sha, idem_ttl, then field/value pairs of the record
if KEYS[4] ~= '' then
  local prior = redis.call('GET', KEYS[4])
  if prior then return {'idem', prior} end
end
if tonumber(ARGV[3]) > 0 and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return {'cap', tostring(redis.call('SCARD', KEYS[3]))}
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
if KEYS[4] ~= '' then
  redis.call('SET', KEYS[4], cjson.encode({job_id = ARGV[1], body_sha256 = ARGV[4]}), 'EX', tonumber(ARGV[5]))
end
return {'ok', ARGV[1]}
