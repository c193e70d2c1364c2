-- _fair_pull.lua: included (not a script): fair_pull(...) moves up to `n` messages of a
-- fair task from its per-key lists into the queue's stream, one key after another
-- (round-robin over the ring of keys with a backlog), skipping keys at their per-key
-- concurrency limit, and forgetting keys with nothing left. Per-key keys are PREFIX ..
-- "q:" .. KEY (the backlog list), "run:" (with a per-key concurrency: the entries fed and
-- not finished), "rate:" (the per-key rate's GCRA state, kept by start.lua) — all in the
-- queue's slot. Returns how many were moved.
local function fair_pull(stream, ring, members, prefix, n, limit)
    local busy_of = {} -- per key seen in this call: entries fed and not finished
    local function busy(key)
        if not busy_of[key] then -- purge once per call: finished entries left the stream
            local running = prefix .. "run:" .. key
            for _, entry in ipairs(redis.call("SMEMBERS", running)) do
                if #redis.call("XRANGE", stream, entry, entry) == 0 then
                    redis.call("SREM", running, entry)
                end
            end
            busy_of[key] = redis.call("SCARD", running)
        end
        return busy_of[key]
    end
    local moved, misses = 0, 0
    local count = redis.call("LLEN", ring)
    while moved < n and misses < count do
        local key = redis.call("LMOVE", ring, ring, "LEFT", "RIGHT")
        if not key then
            break
        end
        local list = prefix .. "q:" .. key
        if redis.call("LLEN", list) == 0 then
            if limit > 0 and busy(key) > 0 then
                misses = misses + 1 -- kept while its last ones run (its limit still counts)
            else -- nothing left of this key: forget it (not its rate: its last messages
                -- may not have started yet, and the GCRA key expires on its own)
                redis.call("LREM", ring, -1, key)
                redis.call("SREM", members, key)
                redis.call("DEL", prefix .. "run:" .. key)
                count = count - 1
            end
        elseif limit > 0 and busy(key) >= limit then
            misses = misses + 1
        else
            local entry = redis.call("XADD", stream, "*", "m", redis.call("LPOP", list))
            if limit > 0 then
                redis.call("SADD", prefix .. "run:" .. key, entry)
                busy_of[key] = busy_of[key] + 1
            end
            moved = moved + 1
            misses = 0
        end
    end
    return moved
end
