-- purge.lua: delete messages no worker has received yet (a batch per call).
--
-- KEYS[1]  the stream
-- KEYS[2]  the delayed set
-- ARGV[1]  consumer group
-- ARGV[2]  the most stream entries to delete in this call
-- ARGV[3]  "1" to delete the delayed set too
-- KEYS[3..] partition keys' orders to delete, three keys each (order, turn, ordered: see
--          _turns.lua), with the messages waiting for their turn (counted with the stream's
--          entries)
--
-- Returns {stream entries deleted, delayed messages deleted}. Call again until both are 0.
--
-- Invariant: entries the group has delivered (running, or pending in a dead worker's list)
-- are never deleted; only those after the group's last-delivered id, which no worker holds.

local delayed, parked = 0, 0
for i = 3, #KEYS, 3 do
    parked = parked + redis.call("HLEN", KEYS[i + 1])
    redis.call("DEL", KEYS[i], KEYS[i + 1])
    redis.call("SREM", KEYS[i + 2], string.match(KEYS[i], "^[^}]*}:order:(.*)$"))
end
if ARGV[3] == "1" then
    delayed = redis.call("ZCARD", KEYS[2])
    redis.call("DEL", KEYS[2])
end
if redis.call("EXISTS", KEYS[1]) == 0 then
    return {parked, delayed}
end
local start = "-"
for _, group in ipairs(redis.call("XINFO", "GROUPS", KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do
        info[group[i]] = group[i + 1]
    end
    if info["name"] == ARGV[1] then
        start = "(" .. info["last-delivered-id"]
    end
end
local ids = {}
for _, entry in ipairs(redis.call("XRANGE", KEYS[1], start, "+", "COUNT", ARGV[2])) do
    ids[#ids + 1] = entry[1]
end
if #ids > 0 then
    redis.call("XDEL", KEYS[1], unpack(ids))
end
return {#ids + parked, delayed}
