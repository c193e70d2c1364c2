-- start.lua: mark a batch of delivered messages running, unless they were cancelled.
--
-- KEYS[1]   the queue's event stream
-- KEYS[2..] the status hash of each message, in ARGV's order
-- ARGV[1]   now, in ms
-- ARGV[2]   the worker (consumer name)
-- ARGV[3]   how long a status lives once nothing changes it, in ms
-- ARGV[4]   the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[5..] per message: its task name, attempt and id (three values each)
--
-- Returns one value per message: 0 to run it; or, for a message cancelled before it
-- started, the reason given ("" when none): the worker settles it as cancelled, unrun.
--
-- Invariant: cancel.lua and this script decide on the same hash, atomically: a message
-- cancelled while queued never starts, and one marked running is cancelled as running.
-- A "started" event is written with each status marked running.

local now, worker, ttl, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local replies = {}
for i = 2, #KEYS do
    local status, at = KEYS[i], 5 + 3 * (i - 2)
    local task, attempt, id = ARGV[at], ARGV[at + 1], ARGV[at + 2]
    local state = redis.call("HGET", status, "state")
    if state == "cancelled" then
        replies[i - 1] = redis.call("HGET", status, "reason") or ""
    else
        redis.call("HSET", status, "state", "running", "attempts", attempt, "worker", worker,
            "updated", now)
        if state == "delayed" or state == "retrying" then
            redis.call("HDEL", status, "body", "due")
        elseif not state then
            -- sent without a status (another producer, or it expired): make one that ends
            redis.call("HSET", status, "task", task)
            redis.call("PEXPIRE", status, ttl)
        end
        if cap > 0 then
            redis.call("XADD", KEYS[1], "MAXLEN", "~", cap, "*", "event", "started", "id", id,
                "task", task, "attempt", attempt, "time", now, "worker", worker)
        end
        replies[i - 1] = 0
    end
end
return replies
