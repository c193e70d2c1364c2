-- trim_topic.lua: apply a topic's retention without dropping what a group still needs.
--
-- KEYS[1]  the topic stream
-- ARGV[1]  max length (0: no length bound)
-- ARGV[2]  oldest id to keep by age, "ms-0" (or "0-0": no age bound)
-- ARGV[3]  "1" to drop events some group has not read or acknowledged, when retention says so
--
-- Returns {trimmed, held, dropped}: events removed that every group was done with; events
-- retention would remove but that are kept because a group has not read or acknowledged
-- them (counted up to 10000); and such events removed anyway because of ARGV[3].
--
-- Invariant: unless ARGV[3] is "1", no event is removed that a group has pending or has
-- not yet been delivered: the cut stays below every group's last-delivered id and oldest
-- pending entry.

local function parse(id)
    local ms, seq = string.match(id, "^(%d+)-(%d+)$")
    return {tonumber(ms), tonumber(seq)}
end

local function less(a, b)
    return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end

local function text(id)
    return string.format("%.0f-%.0f", id[1], id[2])
end

local function after(id)
    return {id[1], id[2] + 1}
end

if redis.call("EXISTS", KEYS[1]) == 0 then
    return {0, 0, 0}
end

-- What retention asks for: remove every event below `target`.
local target = parse(ARGV[2])
local max_len = tonumber(ARGV[1])
if max_len > 0 then
    local excess = redis.call("XLEN", KEYS[1]) - max_len
    if excess > 0 then
        local oldest = redis.call("XRANGE", KEYS[1], "-", "+", "COUNT", math.min(excess, 10000))
        local by_length = after(parse(oldest[#oldest][1]))
        if less(target, by_length) then
            target = by_length
        end
    end
end
if target[1] == 0 and target[2] == 0 then
    return {0, 0, 0}
end

-- What the groups allow: nothing at or above the oldest entry some group still needs.
local safe = nil
for _, group in ipairs(redis.call("XINFO", "GROUPS", KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do
        info[group[i]] = group[i + 1]
    end
    local needed = after(parse(info["last-delivered-id"]))
    local pending = redis.call("XPENDING", KEYS[1], info["name"])
    if pending[1] > 0 then
        local oldest_pending = parse(pending[2])
        if less(oldest_pending, needed) then
            needed = oldest_pending
        end
    end
    if safe == nil or less(needed, safe) then
        safe = needed
    end
end

if safe == nil or not less(safe, target) then
    return {redis.call("XTRIM", KEYS[1], "MINID", text(target)), 0, 0}
end
local trimmed = redis.call("XTRIM", KEYS[1], "MINID", text(safe))
if ARGV[3] == "1" then
    return {trimmed, 0, redis.call("XTRIM", KEYS[1], "MINID", text(target))}
end
local held = redis.call("XRANGE", KEYS[1], text(safe), "(" .. text(target), "COUNT", 10000)
return {trimmed, #held, 0}
