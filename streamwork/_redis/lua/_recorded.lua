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

-- Raise the error reply of a pcall of `command`; a command the user may not run says so,
-- and what to grant (Redis's own reply names no command).
local function refused(reply, command)
    local text = type(reply.err) == "string" and reply.err or ""
    if string.find(text, "can't run this command", 1, true)
            or string.find(text, "NOPERM", 1, true) then
        error({err = "NOPERM this Redis user may not run " .. command .. ": the status and "
            .. "cancel of a message waiting by entry read its stream entry (grant +xrange "
            .. "+xpending +xdel: the security guide's webapp rules)"})
    end
    error(reply)
end

-- The pending entries list's row of `entry_id` in `group` (nil: not pending; no group yet
-- counts as not pending). Any other error (a user without XPENDING: NOPERM) is raised, not
-- read as "not delivered".
local function pending_entry(stream, group, entry_id)
    local pending = redis.pcall("XPENDING", stream, group, entry_id, entry_id, 1)
    if type(pending) == "table" and pending.err then
        -- (memory://, which has no ACL, gives a NOGROUP error that is no Lua string)
        if type(pending.err) ~= "string" or string.find(pending.err, "NOGROUP", 1, true) then
            return nil
        end
        refused(pending, "XPENDING")
    end
    return pending[1]
end

-- The task of the message at `entry_id` of `stream`: false when there is no such entry, ""
-- when its message names none streamwork can read. A message sent by entry (ids.py) has no
-- status until a step writes one: while it waits or runs, its entry is its record.
local function entry_task(stream, entry_id)
    local found = redis.pcall("XRANGE", stream, entry_id, entry_id)
    if found.err then
        refused(found, "XRANGE")
    end
    if not found[1] then
        return false
    end
    local fields = found[1][2]
    for i = 1, #fields, 2 do
        if fields[i] == "m" then
            local ok, message = pcall(cmsgpack.unpack, fields[i + 1])
            if ok and type(message) == "table" and type(message.task) == "string" then
                return message.task
            end
        end
    end
    return ""
end
