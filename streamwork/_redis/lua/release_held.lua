-- release_held.lua: move messages that wait for a concurrency slot back to be run, as many
-- as the limit has slots free.
--
-- KEYS[1]  the slot set (members "STREAM|ENTRY-ID": the entries running under the limit)
-- KEYS[2]  the held list (message bodies, oldest first)
-- KEYS[3]  the ready stream they go back to (the queue's stream, or a group's retry stream)
-- ARGV[1]  the consumer group
-- ARGV[2]  the concurrency limit
-- ARGV[3]  the visibility timeout, in ms (a slot whose entry is idle this long is free)
--
-- Returns how many messages were moved.
--
-- Invariant: a slot is free once its entry is acknowledged or idle past the visibility
-- timeout (its worker died); workers call this after each outcome of a limited task (and
-- the scanner every few seconds, for slots of dead workers), so a held message waits no
-- longer than a slot stays taken. Released messages are admitted again by start.lua: more
-- may be released than start (another message may take the slot first); those are held
-- again, never lost.

-- #include free_slots

local slots, held, ready = KEYS[1], KEYS[2], KEYS[3]
local group, limit, visibility = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local free = limit - free_slots(slots, group, visibility)
local moved = 0
while moved < free do
    local body = redis.call("LPOP", held)
    if not body then
        break
    end
    redis.call("XADD", ready, "*", "m", body)
    moved = moved + 1
end
return moved
