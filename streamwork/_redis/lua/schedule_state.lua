-- schedule_state.lua: pause, resume or remove a schedule.
--
-- KEYS[1]  the schedule's hash
-- KEYS[2]  the queue's due set
-- ARGV[1]  the schedule id
-- ARGV[2]  "pause" | "resume" | "remove"
-- ARGV[3]  resume: the next due time (Unix ms) from now, or "" when it has none left
--
-- Returns 1 done, 0 no such schedule.
--
-- Invariant: a paused or removed schedule is in no due set, so no ticker enqueues it; a
-- resumed one starts at its next tick from now (the ticks it missed paused never run).

local id, action = ARGV[1], ARGV[2]
if redis.call("EXISTS", KEYS[1]) == 0 then
    redis.call("ZREM", KEYS[2], id)
    return 0
end
if action == "remove" then
    redis.call("DEL", KEYS[1])
    redis.call("ZREM", KEYS[2], id)
elseif action == "pause" then
    redis.call("HSET", KEYS[1], "paused", "1")
    redis.call("ZREM", KEYS[2], id)
else
    redis.call("HSET", KEYS[1], "paused", "0")
    if ARGV[3] == "" then
        redis.call("ZREM", KEYS[2], id)
    else
        redis.call("ZADD", KEYS[2], ARGV[3], id)
    end
end
return 1
