-- progress.lua: record a running message's progress.
--
-- KEYS[1]  the message's status hash
-- KEYS[2]  the queue's event stream
-- ARGV[1]  the fraction done, 0..1
-- ARGV[2]  a short note ("" for none)
-- ARGV[3]  now, in ms
-- ARGV[4]  how long a status lives once nothing changes it, in ms
-- ARGV[5]  the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[6]  the message id
-- ARGV[7]  the progress data, msgpack ("": none given; the last written stays)
-- ARGV[8]  its task, ARGV[9] its worker, ARGV[10] its attempt: with no status (a message
--          sent by entry, ids.py, has none while it runs), the status is made running
--
-- Returns 1 written, 0 ignored (the message is not running: its outcome came first).
--
-- Invariant: progress never overwrites a final state; its event is written with it.

-- #include status

-- "queued": a recorded message (enqueue.lua), which no start step marked running
local state = status_state(KEYS[1])
if state == "queued" then
    redis.call("HSET", KEYS[1], "state", "running")
elseif not state and (ARGV[8] or "") ~= "" then
    redis.call("HSET", KEYS[1], "state", "running", "task", ARGV[8], "worker", ARGV[9],
        "attempts", ARGV[10])
elseif state ~= "running" then
    return 0
end
redis.call("HSET", KEYS[1], "progress", ARGV[1], "note", ARGV[2], "updated", ARGV[3])
if ARGV[7] ~= "" then
    redis.call("HSET", KEYS[1], "data", ARGV[7])
end
redis.call("PEXPIRE", KEYS[1], ARGV[4])
local cap = tonumber(ARGV[5])
if cap > 0 then
    local task, attempt, worker = unpack(redis.call("HMGET", KEYS[1], "task", "attempts", "worker"))
    redis.call("XADD", KEYS[2], "MAXLEN", "~", cap, "*", "event", "progress", "id", ARGV[6],
        "task", task or "", "attempt", attempt or "", "time", ARGV[3], "worker", worker or "",
        "progress", ARGV[1], "note", ARGV[2], "data", ARGV[7])
end
return 1
