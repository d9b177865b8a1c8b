"""The Lua scripts of the job store: each state change of a job is one atomic step in Redis.

Keys (`store.py` builds them): the model's stream ``predictors:jobs:{model}`` (one entry per queued run,
field ``job`` = the job id), the job's hash ``predictors:job:{id}`` (with a TTL) and an optional
idempotency key ``predictors:idem:{model}:{key}`` (the job id, same TTL). The scripts that make a job
final also publish its id on the channel ``predictors:job-ended`` (`jobs/ended.py` wakes the long polls),
with ``pcall``: a Redis user not allowed that channel (ACL) still ends its jobs; only its long polls do not
hear of it (they re-read the job every 2 s).

A finished run is acknowledged and deleted from the stream in the same script that writes its outcome,
so the stream's length is the model's backlog (queued and running jobs) and an entry is never run after
its outcome is written. Only delivered entries are ever deleted: the consumer group's lag stays
computable (Redis cannot tell the lag once an entry after the group's last delivered id was deleted).
"""

#: shared by the scripts that end a run: acknowledge the stream entry and drop it
_RELEASE_ENTRY = """
local function release(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
local function is_final(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end
"""

#: KEYS: stream, job hash[, idempotency key]; ARGV: ttl, backlog limit, job id, field/value pairs...
#: -> {'created', id} | {'existing', id} | {'busy', backlog}
SUBMIT = """
local ttl, limit, job_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if KEYS[3] then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'existing', existing} end
end
local backlog = redis.call('XLEN', KEYS[1])
if backlog >= limit then return {'busy', tostring(backlog)} end
local entry = redis.call('XADD', KEYS[1], '*', 'job', job_id)
redis.call('HSET', KEYS[2], 'entry', entry, unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], ttl)
if KEYS[3] then
  redis.call('SET', KEYS[3], job_id, 'EX', ttl)
  redis.call('HSET', KEYS[2], 'idempotency_key', KEYS[3])
end
return {'created', job_id}
"""

#: KEYS: job hash, stream; ARGV: entry, group, consumer, now, max attempts, ttl, error if exhausted,
#: ended channel, job id -> {'run', attempts, fields...} | {'skip', status} | {'exhausted'}
START = _RELEASE_ENTRY + """
local stream, group, entry = KEYS[2], ARGV[2], ARGV[1]
local state = redis.call('HMGET', KEYS[1], 'status', 'entry', 'attempts')
local status = state[1]
if not status then
  release(stream, group, entry)
  return {'skip', 'expired'}
end
if is_final(status) or state[2] ~= entry then
  release(stream, group, entry)
  return {'skip', status}
end
if tonumber(state[3] or '0') >= tonumber(ARGV[5]) then
  -- every run it was allowed was started and none ended: its processes died (killed, lost)
  local last = redis.call('HGET', KEYS[1], 'error') or ARGV[7]
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', last, 'finished_at', ARGV[4], 'finished_by', ARGV[3])
  redis.call('HDEL', KEYS[1], 'body')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
  release(stream, group, entry)
  redis.pcall('PUBLISH', ARGV[8], ARGV[9])
  return {'exhausted'}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[4], 'consumer', ARGV[3])
local request = redis.call('HMGET', KEYS[1], 'protocol', 'body', 'content_type', 'header_length', 'request_id',
                           'traceparent', 'tracestate', 'query', 'created_ts')
return {'run', attempts, unpack(request)}
"""

#: KEYS: job hash, stream; ARGV: entry, group, status, 'result'|'error', payload, now, ttl, consumer,
#: ended channel, job id -> 'written' | the status that was already final | 'expired'
FINISH = _RELEASE_ENTRY + """
release(KEYS[2], ARGV[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'expired' end
if is_final(status) then return status end
redis.call('HSET', KEYS[1], 'status', ARGV[3], ARGV[4], ARGV[5], 'finished_at', ARGV[6], 'finished_by', ARGV[8])
redis.call('HDEL', KEYS[1], 'body')
local ttl = tonumber(ARGV[7])
redis.call('EXPIRE', KEYS[1], ttl)
local idempotency_key = redis.call('HGET', KEYS[1], 'idempotency_key')
if idempotency_key then redis.call('EXPIRE', idempotency_key, ttl) end
redis.pcall('PUBLISH', ARGV[9], ARGV[10])
return 'written'
"""

#: KEYS: job hash, stream; ARGV: entry, group, job id, error, 1 to count the run as an attempt else 0
#: -> 'requeued' | 'skip'
REQUEUE = _RELEASE_ENTRY + """
release(KEYS[2], ARGV[2], ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'status', 'entry')
if not state[1] or is_final(state[1]) or state[2] ~= ARGV[1] then return 'skip' end
local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'queued', 'entry', entry)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] == '0' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
return 'requeued'
"""

#: KEYS: job hash; ARGV: now, ended channel, job id -> {1 if this call cancelled it else 0, status}, or false:
#: no such job
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'body')
  redis.pcall('PUBLISH', ARGV[2], ARGV[3])
  return {1, 'cancelled'}
end
return {0, status}
"""
