-- enqueue_unique.lua: enqueue a message at most once per idempotency key within a TTL.
--
-- KEYS[1]  the idempotency key (NS:{QUEUE}:dedupe:KEY)
-- KEYS[2]  the stream
-- KEYS[3]  the delayed set
-- KEYS[4]  the message's status hash
-- KEYS[5]  the queue's event stream
-- ARGV[1]  the message id
-- ARGV[2]  the message
-- ARGV[3]  how long the key holds, in ms
-- ARGV[4]  due time in ms for a delayed message, or 0 to enqueue now
-- ARGV[5]  the task name (status)
-- ARGV[6]  now, in ms (status)
-- ARGV[7]  how long a status lives once nothing changes it, in ms
-- ARGV[8]  the event stream's length cap (approximate); 0: the queue records no events
--
-- Returns the id of the message that holds the key: ARGV[1] when this call enqueued it,
-- else the id of the message enqueued earlier under the same key.
--
-- Invariant: the key is set in the same step that enqueues (with the message's status), so
-- two producers racing with one key enqueue exactly one message.

local holder = redis.call("GET", KEYS[1])
if holder then
    return holder
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[3])
local due = tonumber(ARGV[4])
if due > 0 then
    redis.call("ZADD", KEYS[3], due, ARGV[2])
    redis.call("HSET", KEYS[4], "state", "delayed", "task", ARGV[5], "updated", ARGV[6],
        "due", due, "body", ARGV[2])
    redis.call("PEXPIREAT", KEYS[4], due + tonumber(ARGV[7]))
else
    redis.call("XADD", KEYS[2], "*", "m", ARGV[2])
    redis.call("HSET", KEYS[4], "state", "queued", "task", ARGV[5], "updated", ARGV[6])
    redis.call("PEXPIRE", KEYS[4], ARGV[7])
end
local cap = tonumber(ARGV[8])
if cap > 0 then
    redis.call("XADD", KEYS[5], "MAXLEN", "~", cap, "*", "event", "sent", "id", ARGV[1],
        "task", ARGV[5], "attempt", 1, "time", ARGV[6], "due", ARGV[4])
end
return ARGV[1]
