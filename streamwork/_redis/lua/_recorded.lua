-- _recorded.lua: included (not a script): where a recorded message waits (see enqueue.lua).
-- Its status's `entry` is its entry id, after "high|" or "low|" when it waits in a priority
-- band's stream (`NS:{QUEUE}:stream:BAND`), so that a reader given the queue's three streams
-- knows which one holds it.

-- The `entry` value for entry `id` added to `stream`.
local function recorded_as(stream, id)
    local band = string.match(stream, ":stream:(%a+)$")
    return band and (band .. "|" .. id) or id
end

-- (the stream, the entry id) of an `entry` value, given the queue's streams (nil, nil for
-- a band it does not know).
local function recorded_at(entry, main, high, low)
    local band, id = string.match(entry, "^(%a+)|(.+)$")
    if not band then
        return main, entry
    end
    local stream = ({high = high, low = low})[band]
    return stream, stream and id
end
