-- enqueue.lua: add one message to a queue (or its delayed set) with its status and event,
-- at most once per idempotency key when it has one.
--
-- KEYS[1]  the stream
-- KEYS[2]  the delayed set
-- KEYS[3]  the message's status hash (NS:{QUEUE}:status:ID; unused when ARGV[5] is 0)
-- KEYS[4]  the queue's event stream (NS:{QUEUE}:events)
-- KEYS[5]  the idempotency key (NS:{QUEUE}:dedupe:KEY), or KEYS[3] again when it has none
-- ARGV[1]  the message
-- ARGV[2]  due time in ms for a delayed message, or 0 to enqueue now
-- ARGV[3]  the task name
-- ARGV[4]  now, in ms
-- ARGV[5]  how long a status lives once nothing changes it, in ms; 0: no status (the app
--          does not track status)
-- ARGV[6]  the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[7]  the message id
-- ARGV[8]  how long the idempotency key holds, in ms; 0: the message has no key
-- ARGV[9]  the workflow the message is a child of ("" or absent: none): its status and
--          "sent" event name it, and it is not sent if its status says it was cancelled
--          already (its workflow was cancelled before this step sent it)
-- KEYS[6..] a message sent with a partition key: its key's order list (NS:{QUEUE}:order:KEY)
--          and the set of the queue's keys with an order (NS:{QUEUE}:ordered)
-- ARGV[10] (with KEYS[6]) the partition key, kept in the status (cancel.lua reads it)
--
-- Returns the id of the message that holds the key: ARGV[7] when this call enqueued it,
-- else the id of the message enqueued earlier under the same key.
--
-- (A plain send with no key, partition, workflow or events writes no status: its entry alone,
-- its id the entry's: ids.py.) A message sent now with a status and no workflow or partition
-- key (one with an idempotency key, say) is added with the field `r`
-- ("recorded") and its status records where it is (`entry`: its entry id, after "high|"
-- or "low|" in a priority band's stream): a worker
-- runs it without a start step, and cancel.lua deletes it from the stream while no worker
-- has read it yet (status.lua reads "running" from the pending entries list).
--
-- Invariant: a message is queued together with its status ("queued" or "delayed"), its
-- "sent" event, its idempotency key and its place in its partition key's order, so a status exists for every message sent (until
-- its time-to-live runs out) and two producers racing with one key enqueue one message.

-- #include recorded

local key_ttl = tonumber(ARGV[8])
local workflow = ARGV[9] or ""
local due, ttl = tonumber(ARGV[2]), tonumber(ARGV[5])
if key_ttl > 0 then
    local holder = redis.call("GET", KEYS[5])
    if holder then
        return holder
    end
end
if workflow ~= "" and ttl > 0 and redis.call("HGET", KEYS[3], "state") == "cancelled" then
    return ARGV[7]
end
if key_ttl > 0 then
    redis.call("SET", KEYS[5], ARGV[7], "PX", key_ttl)
end
if KEYS[6] then
    redis.call("RPUSH", KEYS[6], ARGV[7])
    redis.call("SADD", KEYS[7], ARGV[10])
end
if due > 0 then
    redis.call("ZADD", KEYS[2], due, ARGV[1])
    if ttl > 0 then
        redis.call("HSET", KEYS[3], "state", "delayed", "task", ARGV[3], "updated", ARGV[4],
            "due", due, "body", ARGV[1])
        redis.call("PEXPIREAT", KEYS[3], due + ttl)
    end
elseif ttl > 0 and workflow == "" and not KEYS[6] then
    local entry = redis.call("XADD", KEYS[1], "*", "m", ARGV[1], "r", "1")
    redis.call("HSET", KEYS[3], "state", "queued", "task", ARGV[3], "updated", ARGV[4],
        "entry", recorded_as(KEYS[1], entry))
    redis.call("PEXPIRE", KEYS[3], ARGV[5])
else
    redis.call("XADD", KEYS[1], "*", "m", ARGV[1])
    if ttl > 0 then
        redis.call("HSET", KEYS[3], "state", "queued", "task", ARGV[3], "updated", ARGV[4])
        redis.call("PEXPIRE", KEYS[3], ARGV[5])
    end
end
if workflow ~= "" and ttl > 0 then
    redis.call("HSET", KEYS[3], "workflow", workflow)
end
if KEYS[6] and ttl > 0 then
    redis.call("HSET", KEYS[3], "partition_key", ARGV[10])
end
local cap = tonumber(ARGV[6])
if cap > 0 then
    if workflow ~= "" then
        redis.call("XADD", KEYS[4], "MAXLEN", "~", cap, "*", "event", "sent", "id", ARGV[7],
            "task", ARGV[3], "attempt", 1, "time", ARGV[4], "due", ARGV[2], "workflow", workflow)
    else
        redis.call("XADD", KEYS[4], "MAXLEN", "~", cap, "*", "event", "sent", "id", ARGV[7],
            "task", ARGV[3], "attempt", 1, "time", ARGV[4], "due", ARGV[2])
    end
end
return ARGV[7]
