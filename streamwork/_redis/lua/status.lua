-- status.lua: a message's status hash, with "running" read from where Redis already holds
-- it: a recorded message (see enqueue.lua) is marked running by no step, so while its
-- entry is in its group's pending entries list it is running, on that consumer.
--
-- KEYS[1]   the message's status (a hash, or a done message's compact record: _status.lua)
-- KEYS[2]   the queue's stream
-- KEYS[3]   the stream of its high priority band
-- KEYS[4]   the stream of its low band
-- ARGV[1]   the consumer group
-- ARGV[2]   where its entry is when its id is an entry id of this queue (ids.py; as a
--           status's `entry` says it), else "": with no status, the entry is its record
--
-- Returns the status's fields and values, flat (HGETALL's), where a recorded message whose
-- entry is pending reads state "running" and, unless the hash names them, its worker (the
-- consumer) and attempts (1: a retry is never recorded), and "idle_ms" (how long ago it
-- was delivered) is added. A message sent by entry with no status reads "queued" (its
-- entry waits) or "running" (pending), its task read off its message, "updated" the
-- entry's time; none when its entry is gone.

-- #include recorded
-- #include status

local raw = status_fields(KEYS[1])
local by_entry = #raw == 0 and (ARGV[2] or "") ~= "" -- no status: its entry is its record
local at = {}
for i = 1, #raw, 2 do
    at[raw[i]] = i + 1
end
local entry = by_entry and ARGV[2] or at["entry"] and raw[at["entry"]]
local state = by_entry and "queued" or at["state"] and raw[at["state"]]
if not entry or (state ~= "queued" and state ~= "running") then
    return raw
end
local stream, entry_id = recorded_at(entry, KEYS[2], KEYS[3], KEYS[4])
if not stream then
    return raw
end
if by_entry then
    local task = entry_task(stream, entry_id)
    if not task then
        return {} -- done (its record expired) or never sent: no status
    end
    local sent = string.match(entry_id, "^(%d+)")
    raw = {"state", "queued", "entry", ARGV[2], "task", task, "updated", sent}
    at = {state = 2, entry = 4, task = 6, updated = 8}
end
local pending = pending_entry(stream, ARGV[1], entry_id)
if not pending then
    return raw
end
raw[at["state"]] = "running"
if not at["worker"] then
    raw[#raw + 1] = "worker"
    raw[#raw + 1] = pending[2]
end
if not at["attempts"] then -- its first attempt: a retry is never recorded
    raw[#raw + 1] = "attempts"
    raw[#raw + 1] = "1"
end
raw[#raw + 1] = "idle_ms"
raw[#raw + 1] = tostring(pending[3])
return raw
