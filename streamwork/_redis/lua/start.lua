-- start.lua: admit a batch of delivered messages: refuse the cancelled, hold back what a
-- rate or concurrency limit does not allow now, mark the rest running.
--
-- KEYS[1]   the event stream of the queue (or of the subscriber group)
-- KEYS[2..] status hashes, rate keys, slot sets and partition key orders, referenced by
--           index from ARGV
-- ARGV[1]   now, in ms (the status's `updated`)
-- ARGV[2]   the worker (consumer name)
-- ARGV[3]   how long a status lives once nothing changes it, in ms
-- ARGV[4]   the event stream's length cap (approximate); 0: no events
-- ARGV[5]   the consumer group
-- ARGV[6]   the visibility timeout, in ms (a slot whose entry is idle this long is free)
-- ARGV[7]   an offset added to Redis's clock, in ms (0; tests that advance time move it)
-- ARGV[8]   the messages, msgpack-encoded (one argument, not twelve per message: the
--           client's command packing stays off the hot path): an array of arrays of
--           twelve values (rows.py: StartRow): task, attempt, message id, its entry
--           ("STREAM|ENTRY-ID": a slot's member), status key index (0: none), rate key
--           index (0: no rate limit), emission interval ms, tolerance ms, slot set index (0: no concurrency
--           limit), concurrency limit, its reserved start (ms, Redis's clock: the start
--           the rate reserved when it held it back, 0 for none; one that comes on time,
--           at most LATE_MS after it, is not charged again, a later one is charged as a
--           new start), and its partition key's order
--           list index (0: it has no partition key; see _turns.lua); or, for a message
--           with neither limit nor partition key, four: task, attempt, message id, status
--           key index
--
-- Returns one value per message: 0 to run it; the reason given (a string, "" when none)
-- for a message cancelled before it started (settled as cancelled, unrun); -1 when its
-- concurrency limit is reached (it waits in the held list for a slot); -2 when a message
-- sent before it with its partition key has not finished (it waits for its turn); or, when
-- its rate limit holds it back, the time (ms, Redis's clock) its reserved start is due.
--
-- Invariants: cancel.lua and this script decide on the same hash, atomically: a message
-- cancelled while queued never starts, and one marked running is cancelled as running.
-- Rates are kept on Redis's clock (GCRA: one key per task holds the theoretical arrival
-- time), so workers whose clocks disagree share one limit. A slot is an entry id in a set;
-- it is free again once that entry is acknowledged or idle past the visibility timeout
-- (its worker died), so a crash never leaks a slot. Held-back messages never count as an
-- attempt. A "started" event is written with each status marked running.

local now, worker, ttl, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local group, visibility = ARGV[5], tonumber(ARGV[6])
local clock = nil
local LATE_MS = 100 -- a reserved start this late is charged again (see rate_allows)
local function redis_now()
    if not clock then
        local time = redis.call("TIME")
        clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
            + tonumber(ARGV[7])
    end
    return clock
end

-- #include free_slots
-- #include turns

local purged = {}
local function free(slots, limit)
    if not purged[slots] then -- once per call: the set changes only by this script's SADDs
        purged[slots] = true
        return limit - free_slots(slots, group, visibility)
    end
    return limit - redis.call("SCARD", slots)
end

-- GCRA: 0 when a start is allowed now (and charged), else when the reserved one is due.
-- A reserved start is charged when it is reserved; the limit counts it at that time. One
-- that comes late (its worker lost Redis, backed off) is charged again when it comes: the
-- bucket may have emptied meanwhile (its key expires), and starting it uncharged on top of
-- that moment's starts would break the rate.
local function rate_allows(key, interval, tolerance)
    local at = redis_now()
    local tat = tonumber(redis.call("GET", key) or 0)
    if tat < at then
        tat = at
    end
    local new_tat = tat + interval
    redis.call("SET", key, string.format("%.3f", new_tat), "PX",
        math.ceil(new_tat - at + tolerance + 1000))
    if tat - at <= tolerance then
        return 0
    end
    return math.ceil(tat - tolerance)
end

local replies = {}
for _, row in ipairs(cmsgpack.unpack(ARGV[8])) do
    local task, attempt, id = row[1], row[2], row[3]
    local entry, status_index, rate_index, interval, tolerance, slots_index, limit
    local reserved, order_index = 0, 0
    if #row == 4 then -- status only: no rate, slot or partition key to look at
        status_index, rate_index, slots_index = row[4], 0, 0
    else
        entry, status_index, rate_index = row[4], row[5], row[6]
        interval, tolerance = row[7], row[8]
        slots_index, limit = row[9], row[10]
        reserved = tonumber(row[11]) or 0
        order_index = row[12] or 0
    end
    local status = status_index > 0 and KEYS[status_index] or nil
    local state = status and redis.call("HGET", status, "state")
    local reply = 0
    if state == "cancelled" then
        reply = redis.call("HGET", status, "reason") or ""
    elseif order_index > 0 and must_wait(KEYS[order_index], id) then
        reply = -2
    elseif slots_index > 0 and free(KEYS[slots_index], limit) <= 0 then
        reply = -1
    elseif rate_index > 0 and (reserved <= 0 or redis_now() > reserved + LATE_MS) then
        reply = rate_allows(KEYS[rate_index], interval, tolerance)
    end
    if reply == 0 then
        if slots_index > 0 then
            redis.call("SADD", KEYS[slots_index], entry)
        end
        if status then
            redis.call("HSET", status, "state", "running", "attempts", attempt, "worker",
                worker, "updated", now)
            if state == "delayed" or state == "retrying" then
                redis.call("HDEL", status, "body", "due")
            elseif not state then
                -- sent without a status (another producer, or it expired): one that ends
                redis.call("HSET", status, "task", task)
                redis.call("PEXPIRE", status, ttl)
            end
        end
        if cap > 0 then
            redis.call("XADD", KEYS[1], "MAXLEN", "~", cap, "*", "event", "started", "id", id,
                "task", task, "attempt", attempt, "time", now, "worker", worker)
        end
    end
    replies[#replies + 1] = reply
end
return replies
