-- fair_send.lua: queue messages of a fair task in their keys' lists (with status and
-- "sent" event), and feed one into the stream if nothing of the queue is in it.
--
-- KEYS[1]  the queue's stream
-- KEYS[2]  the task's ring of keys with a backlog (a list)
-- KEYS[3]  the task's set of those keys
-- KEYS[4]  the queue's event stream
-- KEYS[5..] the status hash of each message (none when the app tracks no status)
-- ARGV[1]  the per-key key prefix (NS:{QUEUE}:fair:TASK:)
-- ARGV[2]  the task name
-- ARGV[3]  now, in ms
-- ARGV[4]  how long a status lives once nothing changes it, in ms (0: no status)
-- ARGV[5]  the event stream's length cap (approximate); 0: no events
-- ARGV[6]  per-key concurrency (0: none)
-- ARGV[7..] per message, three values: its id, the message, its key
--
-- Returns how many were queued.
--
-- Invariant: each message is in its key's list (or, fed, in the stream) together with its
-- status and event. Workers feed the stream as they read (fair_pull.lua); feeding one
-- here when the stream is empty wakes workers blocked on it.

-- #include fair_pull

local stream, ring, members, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, task, now_ms = ARGV[1], ARGV[2], ARGV[3]
local ttl, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local n = 0
for at = 7, #ARGV, 3 do
    local id, body, key = ARGV[at], ARGV[at + 1], ARGV[at + 2]
    n = n + 1
    redis.call("RPUSH", prefix .. "q:" .. key, body)
    if redis.call("SADD", members, key) == 1 then
        redis.call("RPUSH", ring, key)
    end
    if ttl > 0 then
        local status = KEYS[4 + n]
        redis.call("HSET", status, "state", "queued", "task", task, "updated", now_ms, "fair", key)
        redis.call("PEXPIRE", status, ttl)
    end
    if cap > 0 then
        redis.call("XADD", events, "MAXLEN", "~", cap, "*", "event", "sent", "id", id, "task",
            task, "attempt", 1, "time", now_ms, "due", 0)
    end
end
if redis.call("XLEN", stream) == 0 then
    fair_pull(stream, ring, members, prefix, 1, tonumber(ARGV[6]))
end
return n
