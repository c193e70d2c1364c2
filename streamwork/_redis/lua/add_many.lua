-- add_many.lua: add a batch of messages to one queue or topic in one command.
--
-- KEYS[1]   the stream
-- KEYS[2]   the delayed set
-- KEYS[3]   the queue's event stream
-- KEYS[4..] one status hash per message, in ARGV's order (none for a topic's events)
-- ARGV[1]   due time in ms for delayed messages, or 0 to add them now
-- ARGV[2]   the task name (status)
-- ARGV[3]   now, in ms (status)
-- ARGV[4]   how long a status lives once nothing changes it, in ms
-- ARGV[5]   the event stream's length cap (approximate); 0: no events
-- ARGV[6]   "1": each message comes with its id (for its status and event); "0": not;
--           "2": not, and its id is its entry's (ids.py: the messages carry none)
-- ARGV[7..] per message: its id and the message (two values each), or the message alone
--
-- Returns how many were added; with ARGV[6] "2", the entry id of each, in order.
--
-- Why a script: one command carrying a thousand messages costs the client far less to
-- encode and parse than a thousand pipelined XADDs, and it is still one slot.
-- Invariant: each message is added together with its status and "sent" event, when the
-- queue has them; with a status, it is recorded as enqueue.lua says (`r`, `entry`).

local due, task, now, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local with_status = #KEYS > 3
local step = ARGV[6] == "1" and 2 or 1
local named, entries = ARGV[6] == "2", {}
-- #include recorded

local n = 0
for i = 7, #ARGV, step do
    n = n + 1
    local status, message = KEYS[3 + n], ARGV[i + step - 1]
    if due > 0 then
        redis.call("ZADD", KEYS[2], due, message)
        if with_status then
            redis.call("HSET", status, "state", "delayed", "task", task, "updated", now,
                "due", due, "body", message)
            redis.call("PEXPIREAT", status, due + ttl)
        end
    elseif with_status then -- recorded: see enqueue.lua
        local entry = redis.call("XADD", KEYS[1], "*", "m", message, "r", "1")
        redis.call("HSET", status, "state", "queued", "task", task, "updated", now,
            "entry", recorded_as(KEYS[1], entry))
        redis.call("PEXPIRE", status, ttl)
    elseif named then
        entries[n] = redis.call("XADD", KEYS[1], "*", "m", message)
    else
        redis.call("XADD", KEYS[1], "*", "m", message)
    end
    if cap > 0 then
        redis.call("XADD", KEYS[3], "MAXLEN", "~", cap, "*", "event", "sent", "id", ARGV[i],
            "task", task, "attempt", 1, "time", now, "due", due)
    end
end
return named and entries or n
