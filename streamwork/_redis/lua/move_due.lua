-- move_due.lua: move delayed messages whose time has come into the stream, atomically.
--
-- KEYS[1]  the delayed set (member: message bytes, score: due time in ms)
-- KEYS[2]  the stream
-- ARGV[1]  now, in ms
-- ARGV[2]  the most entries to move in this call
--
-- Returns {moved, next_due_ms}: how many moved, and the score of the earliest entry left
-- (-1 when the set is empty).
--
-- Invariant: a member leaves the set in the same step that adds it to the stream, so any
-- number of workers may run this at once with no loss and no duplicate.

local due = redis.call("ZRANGE", KEYS[1], "-inf", ARGV[1], "BYSCORE", "LIMIT", 0, ARGV[2])
for _, message in ipairs(due) do
    redis.call("XADD", KEYS[2], "*", "m", message)
end
if #due > 0 then
    redis.call("ZREM", KEYS[1], unpack(due))
end
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
local next_due = -1
if first[2] then
    next_due = tonumber(first[2])
end
return {#due, next_due}
