-- remove_idle_consumers.lua: drop consumers that hold nothing and have been idle a long time.
--
-- KEYS[1]  the stream
-- ARGV[1]  consumer group
-- ARGV[2]  minimum idle time in ms
--
-- Returns the names of the consumers removed.
--
-- Invariant: XGROUP DELCONSUMER discards a consumer's pending entries, so a consumer is
-- removed only when it has none, checked in the same atomic step (a live worker removed
-- this way is simply created again by its next XREADGROUP).

local removed = {}
for _, consumer in ipairs(redis.call("XINFO", "CONSUMERS", KEYS[1], ARGV[1])) do
    local info = {}
    for i = 1, #consumer, 2 do
        info[consumer[i]] = consumer[i + 1]
    end
    if info["pending"] == 0 and info["idle"] >= tonumber(ARGV[2]) then
        redis.call("XGROUP", "DELCONSUMER", KEYS[1], ARGV[1], info["name"])
        removed[#removed + 1] = info["name"]
    end
end
return removed
