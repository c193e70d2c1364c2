-- read_bands.lua: read new entries of a queue with priority bands, higher bands first.
--
-- KEYS[1..] the band streams, highest band first (high, default, low)
-- ARGV[1]   the consumer group
-- ARGV[2]   the consumer
-- ARGV[3]   the most entries to read (what the worker has room for)
-- ARGV[4]   max starvation, in ms: a band whose oldest waiting entry has waited longer is
--           read first (0: never)
--
-- Returns {stream, entries, stream, entries, ...} as XREADGROUP does, at most ARGV[3]
-- entries in all: from the starving bands first (oldest first), then by band.
--
-- Invariant: one step, so a worker never takes a lower band's entries while a higher
-- band has entries it could run; an entry read here is in the reader's pending list like
-- any XREADGROUP delivery.

local group, consumer = ARGV[1], ARGV[2]
local left, starvation = tonumber(ARGV[3]), tonumber(ARGV[4])

-- How long the oldest entry not yet delivered to the group has waited (ms), or -1.
local function waited(stream, now)
    local last = nil
    for _, info in ipairs(redis.call("XINFO", "GROUPS", stream)) do
        local fields = {}
        for i = 1, #info, 2 do
            fields[info[i]] = info[i + 1]
        end
        if fields["name"] == group then
            last = fields["last-delivered-id"]
        end
    end
    if not last then
        return -1
    end
    local next_entry = redis.call("XRANGE", stream, "(" .. last, "+", "COUNT", 1)[1]
    if not next_entry then
        return -1
    end
    local added = tonumber(string.match(next_entry[1], "^(%d+)"))
    return now - added
end

local order = {}
if starvation > 0 then
    local time = redis.call("TIME")
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    local starving = {}
    for i = 2, #KEYS do -- the highest band cannot starve
        if redis.call("EXISTS", KEYS[i]) == 1 then
            local age = waited(KEYS[i], now)
            if age > starvation then
                starving[#starving + 1] = {KEYS[i], age}
            end
        end
    end
    table.sort(starving, function(a, b) return a[2] > b[2] end)
    for _, band in ipairs(starving) do
        order[#order + 1] = band[1]
    end
end
for _, stream in ipairs(KEYS) do
    order[#order + 1] = stream
end

local out = {}
local seen = {}
for _, stream in ipairs(order) do
    if left <= 0 then
        break
    end
    if not seen[stream] then
        seen[stream] = true
        local reply = redis.call("XREADGROUP", "GROUP", group, consumer, "COUNT", left,
            "STREAMS", stream, ">")
        -- Redis replies {{stream, entries}}; memory:// (fakeredis) {stream, entries}
        local entries = nil
        if reply and type(reply[1]) == "table" then
            entries = reply[1][2]
        elseif reply and type(reply[2]) == "table" then
            entries = reply[2]
        end
        if entries and #entries > 0 then
            out[#out + 1] = stream
            out[#out + 1] = entries
            left = left - #entries
        end
    end
end
return out
