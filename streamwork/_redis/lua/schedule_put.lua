-- schedule_put.lua: create a schedule or update its definition (an upsert by id).
--
-- KEYS[1]  the schedule's hash (NS:{QUEUE}:schedule:ID)
-- KEYS[2]  the queue's due set (NS:{QUEUE}:schedules)
-- ARGV[1]  the schedule id (the due set's member)
-- ARGV[2]  the definition's revision (a digest of every field that decides its ticks)
-- ARGV[3]  the first due time (Unix ms) under this definition, or "" if it has none left
-- ARGV[4]  "1": a new schedule starts paused
-- ARGV[5]  the origin: "code" (declared in the app, reconciled by workers) or "runtime"
-- ARGV[6..] the definition, as field / value pairs
--
-- Returns 0 unchanged (same revision: only the origin is written), 1 created, 2 updated.
--
-- Invariant: an update keeps the paused state, the last run and the counters; an unchanged
-- definition keeps its due time, so re-declaring a schedule never moves or repeats a tick.

local id, rev, first, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local current = redis.call("HGET", KEYS[1], "rev")
if current == rev then
    redis.call("HSET", KEYS[1], "origin", origin)
    return 0
end
local fields = {}
for i = 6, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], "rev", rev, "origin", origin, unpack(fields))
local created = current == false
if created then
    redis.call("HSET", KEYS[1], "paused", ARGV[4])
end
if redis.call("HGET", KEYS[1], "paused") == "1" or first == "" then
    redis.call("ZREM", KEYS[2], id)
else
    redis.call("ZADD", KEYS[2], first, id)
end
if created then
    return 1
end
return 2
