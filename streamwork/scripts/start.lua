-- start.lua: mark a batch of delivered messages running, unless they were cancelled.
--
-- KEYS[1..] the status hash of each message, in ARGV's order
-- ARGV[1]   now, in ms
-- ARGV[2]   the worker (consumer name)
-- ARGV[3]   how long a status lives once nothing changes it, in ms
-- ARGV[4..] per message: its task name and attempt (two values each)
--
-- Returns one value per message: 0 to run it; or, for a message cancelled before it
-- started, the reason given ("" when none): the worker settles it as cancelled, unrun.
--
-- Invariant: cancel.lua and this script decide on the same hash, atomically: a message
-- cancelled while queued never starts, and one marked running is cancelled as running.

local now, worker, ttl = ARGV[1], ARGV[2], ARGV[3]
local replies = {}
for i, status in ipairs(KEYS) do
    local state = redis.call("HGET", status, "state")
    if state == "cancelled" then
        replies[i] = redis.call("HGET", status, "reason") or ""
    else
        redis.call("HSET", status, "state", "running", "attempts", ARGV[3 + 2 * i],
            "worker", worker, "updated", now)
        if state == "delayed" or state == "retrying" then
            redis.call("HDEL", status, "body", "due")
        elseif not state then
            -- sent without a status (another producer, or it expired): make one that ends
            redis.call("HSET", status, "task", ARGV[2 + 2 * i])
            redis.call("PEXPIRE", status, ttl)
        end
        replies[i] = 0
    end
end
return replies
