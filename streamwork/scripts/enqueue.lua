-- enqueue.lua: add one message to a queue (or its delayed set) and record its status.
--
-- KEYS[1]  the stream
-- KEYS[2]  the delayed set
-- KEYS[3]  the message's status hash (NS:{QUEUE}:status:ID)
-- KEYS[4]  the queue's event stream (NS:{QUEUE}:events)
-- ARGV[1]  the message
-- ARGV[2]  due time in ms for a delayed message, or 0 to enqueue now
-- ARGV[3]  the task name
-- ARGV[4]  now, in ms
-- ARGV[5]  how long a status lives once nothing changes it, in ms
-- ARGV[6]  the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[7]  the message id
--
-- Returns 1.
--
-- Invariant: a message is queued together with its status ("queued" or "delayed") and its
-- "sent" event, so a status exists for every message sent (until its time-to-live runs out).

local due = tonumber(ARGV[2])
if due > 0 then
    redis.call("ZADD", KEYS[2], due, ARGV[1])
    redis.call("HSET", KEYS[3], "state", "delayed", "task", ARGV[3], "updated", ARGV[4],
        "due", due, "body", ARGV[1])
    redis.call("PEXPIREAT", KEYS[3], due + tonumber(ARGV[5]))
else
    redis.call("XADD", KEYS[1], "*", "m", ARGV[1])
    redis.call("HSET", KEYS[3], "state", "queued", "task", ARGV[3], "updated", ARGV[4])
    redis.call("PEXPIRE", KEYS[3], ARGV[5])
end
local cap = tonumber(ARGV[6])
if cap > 0 then
    redis.call("XADD", KEYS[4], "MAXLEN", "~", cap, "*", "event", "sent", "id", ARGV[7],
        "task", ARGV[3], "attempt", 1, "time", ARGV[4], "due", ARGV[2])
end
return 1
