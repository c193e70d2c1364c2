-- _fair_pull.lua: included (not a script): fair_pull(...) moves up to `n` messages of a
-- fair task from its per-key lists into the queue's stream, one key after another
-- (round-robin over the ring of keys with a backlog), skipping keys at their per-key
-- concurrency limit, and forgetting keys with nothing left. Per-key keys are PREFIX ..
-- "q:" .. KEY (the backlog list), "run:" (the entries fed and not finished), "rate:" (the
-- per-key rate's GCRA state, kept by start.lua) — all in the queue's slot. Returns how
-- many were moved.
local function fair_pull(stream, ring, members, prefix, n, limit)
    local moved, misses = 0, 0
    local count = redis.call("LLEN", ring)
    while moved < n and misses < count do
        local key = redis.call("LMOVE", ring, ring, "LEFT", "RIGHT")
        if not key then
            break
        end
        local list, running = prefix .. "q:" .. key, prefix .. "run:" .. key
        for _, entry in ipairs(redis.call("SMEMBERS", running)) do
            if #redis.call("XRANGE", stream, entry, entry) == 0 then
                redis.call("SREM", running, entry) -- finished (queues delete acked entries)
            end
        end
        local backlog = redis.call("LLEN", list)
        local busy = redis.call("SCARD", running)
        if backlog == 0 then
            misses = misses + 1
            if busy == 0 then -- nothing left of this key: forget it
                redis.call("LREM", ring, -1, key)
                redis.call("SREM", members, key)
                redis.call("DEL", running, prefix .. "rate:" .. key)
                count = count - 1
                misses = misses - 1
            end
        elseif limit > 0 and busy >= limit then
            misses = misses + 1
        else
            local body = redis.call("LPOP", list)
            local entry = redis.call("XADD", stream, "*", "m", body)
            redis.call("SADD", running, entry)
            moved = moved + 1
            misses = 0
        end
    end
    return moved
end
