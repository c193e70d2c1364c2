-- renew_lease.lua: keep the claim on entries this consumer is still running fresh.
--
-- KEYS[1]   the stream
-- ARGV[1]   consumer group
-- ARGV[2]   consumer name
-- ARGV[3..] entry ids this consumer is running
--
-- Returns the ids it no longer owns (claimed by another worker, or gone from the PEL; all of
-- them when the group itself is gone, e.g. after FLUSHALL).
--
-- Invariant: resets the idle time (XCLAIM ... JUSTID, which leaves the delivery count alone)
-- only of entries this consumer still owns, so a live worker keeps its lease and a worker
-- that was frozen past the visibility timeout never takes an entry back from its new owner.

local group, consumer = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
    local id = ARGV[i]
    local reply = redis.pcall("XPENDING", KEYS[1], group, id, id, 1)
    local entry = type(reply) == "table" and not reply.err and reply[1] or nil
    if entry ~= nil and entry[2] == consumer then
        redis.call("XCLAIM", KEYS[1], group, consumer, 0, id, "JUSTID")
    else
        lost[#lost + 1] = id
    end
end
return lost
