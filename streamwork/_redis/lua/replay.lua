-- replay.lua: move dead letters back into their queue's stream, atomically.
--
-- KEYS[1]   the dead-letter stream
-- KEYS[2]   the stream
-- KEYS[3]   the queue's event stream
-- KEYS[4..] one status hash per dead letter, in ARGV's order (none for a topic's group)
-- ARGV[1]   the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[2]   now, in ms
-- ARGV[3]   how long a status lives once nothing changes it, in ms
-- ARGV[4..] per dead letter: its entry id, the message to enqueue (its attempts reset), its
--           message id and task (four values each)
--
-- Returns how many were moved (an id already gone from the dead letters is skipped).
--
-- Invariant: each dead letter leaves the dead-letter stream in the same step that adds its
-- message to the stream (its status "queued" again, its "replayed" event written), so an
-- interrupted or repeated replay loses and duplicates nothing.

local cap, now, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local with_status = #KEYS > 3
local moved = 0
for i = 4, #ARGV, 4 do
    local n = (i - 4) / 4 + 1
    if redis.call("XDEL", KEYS[1], ARGV[i]) == 1 then
        redis.call("XADD", KEYS[2], "*", "m", ARGV[i + 1])
        moved = moved + 1
        if with_status and ARGV[i + 2] ~= "" then
            local status = KEYS[3 + n]
            redis.call("HSET", status, "state", "queued", "task", ARGV[i + 3], "updated", now)
            redis.call("HDEL", status, "error", "reason", "cancel", "progress", "note")
            redis.call("PEXPIRE", status, ttl)
            if cap > 0 then
                redis.call("XADD", KEYS[3], "MAXLEN", "~", cap, "*", "event", "replayed", "id",
                    ARGV[i + 2], "task", ARGV[i + 3], "attempt", 1, "time", now)
            end
        end
    end
end
return moved
