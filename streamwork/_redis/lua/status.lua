-- status.lua: a message's status hash, with "running" read from where Redis already holds
-- it: a recorded message (see enqueue.lua) is marked running by no step, so while its
-- entry is in its group's pending entries list it is running, on that consumer.
--
-- KEYS[1]   the message's status (a hash, or a done message's compact record: _status.lua)
-- KEYS[2]   the queue's stream
-- KEYS[3]   the stream of its high priority band
-- KEYS[4]   the stream of its low band
-- ARGV[1]   the consumer group
--
-- Returns the status's fields and values, flat (HGETALL's), where a recorded message whose
-- entry is pending reads state "running" and, unless the hash names them, its worker (the
-- consumer) and attempts (1: a retry is never recorded), and "idle_ms" (how long ago it
-- was delivered) is added.

-- #include recorded
-- #include status

local raw = status_fields(KEYS[1])
local at = {}
for i = 1, #raw, 2 do
    at[raw[i]] = i + 1
end
local entry = at["entry"] and raw[at["entry"]]
local state = at["state"] and raw[at["state"]]
if not entry or (state ~= "queued" and state ~= "running") then
    return raw
end
local stream, entry_id = recorded_at(entry, KEYS[2], KEYS[3], KEYS[4])
if not stream then
    return raw
end
local pending = redis.pcall("XPENDING", stream, ARGV[1], entry_id, entry_id, 1)
if type(pending) ~= "table" or pending.err or not pending[1] then
    return raw
end
raw[at["state"]] = "running"
if not at["worker"] then
    raw[#raw + 1] = "worker"
    raw[#raw + 1] = pending[1][2]
end
if not at["attempts"] then -- its first attempt: a retry is never recorded
    raw[#raw + 1] = "attempts"
    raw[#raw + 1] = "1"
end
raw[#raw + 1] = "idle_ms"
raw[#raw + 1] = tostring(pending[1][3])
return raw
