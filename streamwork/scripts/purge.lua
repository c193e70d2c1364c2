-- purge.lua: delete messages no worker has received yet (a batch per call).
--
-- KEYS[1]  the stream
-- KEYS[2]  the delayed set
-- ARGV[1]  consumer group
-- ARGV[2]  the most stream entries to delete in this call
-- ARGV[3]  "1" to delete the delayed set too
-- ARGV[4]  the queue's order prefix (`NS:{QUEUE}:`, see _turns.lua) to delete its partition
--          keys' orders and the messages waiting for their turn (counted with the stream's
--          entries); "": leave them
--
-- Returns {stream entries deleted, delayed messages deleted}. Call again until both are 0.
--
-- Invariant: entries the group has delivered (running, or pending in a dead worker's list)
-- are never deleted; only those after the group's last-delivered id, which no worker holds.

local delayed, parked = 0, 0
local prefix = ARGV[4] or ""
if prefix ~= "" then
    for _, key in ipairs(redis.call("SMEMBERS", prefix .. "ordered")) do
        parked = parked + redis.call("HLEN", prefix .. "turn:" .. key)
        redis.call("DEL", prefix .. "order:" .. key, prefix .. "turn:" .. key)
    end
    redis.call("DEL", prefix .. "ordered")
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
