-- cancel.lua: cancel a message, whatever state it is in; say what that did.
--
-- KEYS[1]  the message's status hash
-- KEYS[2]  the queue's delayed set (where a delayed message or a retry waits)
-- KEYS[3]  the queue's event stream
-- KEYS[4]  the delayed set of the queue's high priority band (a delayed message of a band
--          waits in its band's set)
-- KEYS[5]  the delayed set of its low band
-- KEYS[6]  the queue's stream: where a recorded message waits (its status's `entry`: its
--          entry id, after "high|" or "low|" in a band's stream; see enqueue.lua)
-- KEYS[7]  the stream of its high band
-- KEYS[8]  the stream of its low band
-- KEYS[9]  the queue's stats hash (a recorded message deleted here counts as cancelled)
-- ARGV[7]  the consumer group
-- ARGV[8]  where its entry is when its id is an entry id of this queue (ids.py; as a
--          status's `entry` says it), else "": with no status, the entry is its record
-- ARGV[1]  the reason ("" for none)
-- ARGV[2]  now, in ms
-- ARGV[3]  how long a status lives once nothing changes it, in ms
-- ARGV[4]  the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[5]  the message id
-- ARGV[6]  "1": a workflow child that may not be sent yet: with no status, write a
--          "cancelled" one, which stops the step that sends it (enqueue.lua)
--
-- Returns {what, state before}: what is "unknown" (no status: never sent, or expired),
-- "finished" (done, failed, dead or expired already: nothing changes), "cancelled" (cancelled
-- already, before "cancelled": a repeated cancel, say after a lost reply, answers as the
-- first did; nothing changes), "cancelled" (it was
-- queued, delayed or waiting to retry: it will never run; a delayed one leaves the delayed
-- set now — one with a partition key is made due now instead, so that a worker settles it
-- and its key's next message goes — a queued one is settled unrun when a worker reaches
-- it, one waiting for its partition key's turn when its turn comes), or "cancelling" (it is
-- running: its worker stops it, and records it cancelled).
--
-- Invariant: decided on the same hash as start.lua, atomically: a message either never
-- starts, or is cancelled as a running one. A message cancelled before it ran gets its
-- "cancelled" event here; one cancelled while running, from the step that settles it.

-- #include recorded
-- #include status

local state = status_state(KEYS[1]) -- a compact record (_status.lua) is a done message's
local by_entry = not state and (ARGV[8] or "") ~= "" -- sent by entry: no status yet
if not state and not by_entry and ARGV[6] ~= "1" then
    return {"unknown", ""}
end
if state == "cancelled" then
    return {"cancelled", state}
end
if state == "done" or state == "failed" or state == "dead" or state == "expired" then
    return {"finished", state}
end
-- A recorded message (no start step marks it running): delivered to a worker, it runs or
-- is about to; not delivered yet, it is deleted from its stream now, before any worker can
-- read it (this step and the group's reads are atomic to each other).
local entry = state == "queued" and redis.call("HGET", KEYS[1], "entry")
    or by_entry and ARGV[8]
local stream, entry_id = nil, nil
if entry then
    stream, entry_id = recorded_at(entry, KEYS[6], KEYS[7], KEYS[8])
end
local task = nil -- sent by entry: its task, read off its message
if by_entry then
    task = stream and entry_task(stream, entry_id)
    if not task then
        return {"unknown", ""} -- done (its record expired) or never sent
    end
    state = "queued"
end
if stream then
    if pending_entry(stream, ARGV[7], entry_id) then
        state = "running"
    else
        local deleted = redis.pcall("XDEL", stream, entry_id)
        if type(deleted) == "table" then
            refused(deleted, "XDEL")
        end
        if deleted == 1 then
            redis.call("HINCRBY", KEYS[9], "cancelled", 1)
        end
    end
end
if state == "running" then
    if task then -- its status, from now on (the settle names its outcome there)
        redis.call("HSET", KEYS[1], "state", "running", "task", task, "attempts", 1)
        redis.call("PEXPIRE", KEYS[1], ARGV[3])
    end
    redis.call("HSET", KEYS[1], "cancel", "1", "reason", ARGV[1], "updated", ARGV[2])
    return {"cancelling", state}
end
local body = state and redis.call("HGET", KEYS[1], "body")
if body and redis.call("HGET", KEYS[1], "partition_key") then
    -- A message with a partition key is due at once instead: a worker settles it as
    -- cancelled (unrun), which lets the next message of its key go.
    redis.call("ZADD", KEYS[2], "XX", ARGV[2], body)
    for i = 4, 5 do
        redis.call("ZADD", KEYS[i], "XX", ARGV[2], body)
    end
elseif body then
    redis.call("ZREM", KEYS[2], body)
    for i = 4, 5 do
        redis.call("ZREM", KEYS[i], body)
    end
end
redis.call("HSET", KEYS[1], "state", "cancelled", "reason", ARGV[1], "updated", ARGV[2])
redis.call("HDEL", KEYS[1], "body", "due")
if task then
    redis.call("HSET", KEYS[1], "task", task)
end
redis.call("PEXPIRE", KEYS[1], ARGV[3])
local cap = tonumber(ARGV[4])
if cap > 0 then
    local task, attempt = unpack(redis.call("HMGET", KEYS[1], "task", "attempts"))
    redis.call("XADD", KEYS[3], "MAXLEN", "~", cap, "*", "event", "cancelled", "id", ARGV[5],
        "task", task or "", "attempt", attempt or "0", "time", ARGV[2], "error", ARGV[1])
end
return {"cancelled", state or "waiting"}
