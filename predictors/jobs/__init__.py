"""Asynchronous jobs on Redis Streams: submit, poll, survive the death of the process that ran them.

- `store.py`: the Redis keys and every state change of a job (atomic Lua scripts), no server imports;
- `execute.py`: a stored request run through the synchronous route's own path (KServe data plane ->
  model hooks -> `ModelRuntime`), so a job's result is the synchronous answer;
- `worker.py`: one consumer loop per model (XREADGROUP / XAUTOCLAIM), bounded by the batcher's room;
- `service.py`: submit / get (and its long poll) / cancel for the routes, with validation and the error mapping;
- `ended.py`: the long polls waiting in this process, woken by the one subscription to the jobs that ended;
- `routes.py`: the REST routes, a thin adapter onto the service.
"""
