-- _status.lua: included (not a script): a message's status, in either of its two forms.
-- A hash (state, task, updated, attempts, worker, error, progress, ...: every state), or,
-- once a recorded message (see enqueue.lua) that ran once is done with nothing more to say
-- (no result, error, progress or event), the compact record settle.lua writes with one SET:
-- the string "done" US attempts US updated US worker US task (US: the unit separator, \31).

-- The status at `key` as HGETALL's flat list of fields and values ({}: none).
local function status_fields(key)
    local raw = redis.pcall("HGETALL", key)
    if not raw.err then
        return raw
    end
    local state, attempts, updated, worker, task = string.match(redis.call("GET", key),
        "^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$")
    if not state then
        return {}
    end
    return {"state", state, "attempts", attempts, "updated", updated, "worker", worker,
        "task", task}
end

-- The state of the status at `key` (false: none).
local function status_state(key)
    local state = redis.pcall("HGET", key, "state")
    if type(state) == "table" and state.err then
        return "done" -- a compact record: only a done message has one
    end
    return state
end
