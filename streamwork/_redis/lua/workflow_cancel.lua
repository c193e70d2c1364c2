-- workflow_cancel.lua: cancel a workflow; list its children that may still run.
--
-- KEYS[1]  the workflow hash (NS:{wf:ID}:workflow)
-- KEYS[2]  the workflow's "finished" list
-- ARGV[1]  the reason ("" for none)
-- ARGV[2]  now, in ms
--
-- Returns {what, state before, spec, spec, ...}: what is "unknown" (no such workflow, or
-- it expired), "finished" (done already: nothing changes) or "cancelled" (now, or already,
-- before "cancelled": a repeated cancel answers as the first did); then the message spec
-- of every task node released and not finished, for the caller to cancel each message in
-- its own queue's slot (listed again on a repeat: a caller whose reply was lost before it
-- cancelled them all finishes the job; cancelling a message twice changes nothing).
--
-- Invariant: decided on the same hash as workflow_record.lua, atomically: a child whose
-- outcome is recorded after this releases nothing; a node released before it is in the
-- list returned here.

local wf, finished = KEYS[1], KEYS[2]
local state = redis.call("HGET", wf, "state")
if not state then
    return {"unknown", ""}
end
if state == "done" then
    return {"finished", state}
end
if state ~= "cancelled" then
    local ttl = redis.call("HGET", wf, "ttl")
    redis.call("HSET", wf, "state", "cancelled", "reason", ARGV[1], "finished", ARGV[2])
    redis.call("PEXPIRE", wf, ttl)
    redis.call("RPUSH", finished, "cancelled") -- its only element: no DEL in producer ACLs
    redis.call("LTRIM", finished, -1, -1)
    redis.call("PEXPIRE", finished, ttl)
end
local out = {"cancelled", state}
local count = tonumber(redis.call("HGET", wf, "n"))
for node = 0, count - 1 do
    -- HGET, not HMGET: the producer's ACL rules name the hash commands one by one
    if redis.call("HGET", wf, "q:" .. node) and not redis.call("HGET", wf, "s:" .. node) then
        out[#out + 1] = redis.call("HGET", wf, "m:" .. node)
    end
end
return out
