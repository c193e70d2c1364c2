-- cancel.lua: cancel a message, whatever state it is in; say what that did.
--
-- KEYS[1]  the message's status hash
-- KEYS[2]  the queue's delayed set (where a delayed message or a retry waits)
-- ARGV[1]  the reason ("" for none)
-- ARGV[2]  now, in ms
-- ARGV[3]  how long a status lives once nothing changes it, in ms
--
-- Returns {what, state before}: what is "unknown" (no status: never sent, or expired),
-- "finished" (done, failed, dead or cancelled already: nothing changes), "cancelled" (it was
-- queued, delayed or waiting to retry: it will never run; a delayed one leaves the delayed
-- set now, a queued one is settled unrun when a worker reaches it), or "cancelling" (it is
-- running: its worker stops it, and records it cancelled).
--
-- Invariant: decided on the same hash as start.lua, atomically: a message either never
-- starts, or is cancelled as a running one.

local state = redis.call("HGET", KEYS[1], "state")
if not state then
    return {"unknown", ""}
end
if state == "done" or state == "failed" or state == "dead" or state == "cancelled" then
    return {"finished", state}
end
if state == "running" then
    redis.call("HSET", KEYS[1], "cancel", "1", "reason", ARGV[1], "updated", ARGV[2])
    return {"cancelling", state}
end
local body = redis.call("HGET", KEYS[1], "body")
if body then
    redis.call("ZREM", KEYS[2], body)
end
redis.call("HSET", KEYS[1], "state", "cancelled", "reason", ARGV[1], "updated", ARGV[2])
redis.call("HDEL", KEYS[1], "body", "due")
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return {"cancelled", state}
