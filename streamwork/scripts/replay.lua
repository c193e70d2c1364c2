-- replay.lua: move dead letters back into their queue's stream, atomically.
--
-- KEYS[1]   the dead-letter stream
-- KEYS[2]   the stream
-- ARGV[..]  pairs: dead-letter entry id, the message to enqueue (its attempts reset)
--
-- Returns how many were moved (an id already gone from the dead letters is skipped).
--
-- Invariant: each dead letter leaves the dead-letter stream in the same step that adds its
-- message to the stream, so an interrupted or repeated replay loses and duplicates nothing.

local moved = 0
for i = 1, #ARGV, 2 do
    if redis.call("XDEL", KEYS[1], ARGV[i]) == 1 then
        redis.call("XADD", KEYS[2], "*", "m", ARGV[i + 1])
        moved = moved + 1
    end
end
return moved
