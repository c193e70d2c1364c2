-- add_many.lua: add a batch of messages to one queue or topic in one command.
--
-- KEYS[1]   the stream
-- KEYS[2]   the delayed set
-- KEYS[3..] one status hash per message, in ARGV's order (none for a topic's events)
-- ARGV[1]   due time in ms for delayed messages, or 0 to add them now
-- ARGV[2]   the task name (status)
-- ARGV[3]   now, in ms (status)
-- ARGV[4]   how long a status lives once nothing changes it, in ms
-- ARGV[5..] the messages
--
-- Returns how many were added.
--
-- Why a script: one command carrying a thousand messages costs the client far less to
-- encode and parse than a thousand pipelined XADDs, and it is still one slot.
-- Invariant: each message is added together with its status, when it has one.

local due, task, now, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local with_status = #KEYS > 2
for i = 5, #ARGV do
    local status = KEYS[i - 2]
    if due > 0 then
        redis.call("ZADD", KEYS[2], due, ARGV[i])
        if with_status then
            redis.call("HSET", status, "state", "delayed", "task", task, "updated", now,
                "due", due, "body", ARGV[i])
            redis.call("PEXPIREAT", status, due + ttl)
        end
    else
        redis.call("XADD", KEYS[1], "*", "m", ARGV[i])
        if with_status then
            redis.call("HSET", status, "state", "queued", "task", task, "updated", now)
            redis.call("PEXPIRE", status, ttl)
        end
    end
end
return #ARGV - 4
