-- schedules_due.lua: the schedules of one queue due now, by Redis's clock.
--
-- KEYS[1]  the queue's due set
-- ARGV[1]  an offset added to Redis's clock, in ms (0; tests that advance time move it)
-- ARGV[2]  the most schedules to return
--
-- Returns {now ms, next due ms or -1, id, due ms, id, due ms, ...}: the due schedules and,
-- when none is due, when the earliest will be.
--
-- Invariant: ticks are computed from Redis's time, never from a worker's clock, so workers
-- whose clocks disagree still agree on which ticks are due.

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + tonumber(ARGV[1])
local reply = {now, -1}
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "WITHSCORES", "LIMIT", 0, ARGV[2])
for i = 1, #due do
    reply[#reply + 1] = due[i]
end
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
if #first > 0 then
    reply[2] = tonumber(first[2])
end
return reply
