-- _free_slots.lua: included (not a script): free_slots(slots, group, visibility) drops the
-- members of a concurrency slot set whose entry is no longer running — acknowledged (not
-- pending any more) or idle past the visibility timeout (its worker died) — and returns
-- how many slots are taken. Members are "STREAM|ENTRY-ID".
local function free_slots(slots, group, visibility)
    for _, member in ipairs(redis.call("SMEMBERS", slots)) do
        local at = string.find(member, "|", 1, true)
        local stream, entry = string.sub(member, 1, at - 1), string.sub(member, at + 1)
        local reply = redis.pcall("XPENDING", stream, group, entry, entry, 1)
        local found = type(reply) == "table" and not reply.err and reply[1] or nil
        if not found or tonumber(found[3]) >= visibility then
            redis.call("SREM", slots, member)
        end
    end
    return redis.call("SCARD", slots)
end
