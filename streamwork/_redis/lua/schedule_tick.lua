-- schedule_tick.lua: enqueue a schedule's due tick(s) once, and move it to its next tick.
--
-- KEYS[1]  the schedule's hash
-- KEYS[2]  the queue's due set
-- KEYS[3]  the queue's stream
-- KEYS[4]  the queue's event stream
-- KEYS[5]  the status hash of the last message enqueued (KEYS[1] when there is none)
-- KEYS[6..] per message, in ARGV's order: its claim key (NS:{QUEUE}:tick:ID:DUE_MS) and
--           its status hash (two keys each)
-- ARGV[1]  the schedule id
-- ARGV[2]  the due time the caller read (Unix ms), or "trigger": a run now that neither
--          checks nor moves the due time, nor looks at overlap
-- ARGV[3]  the revision the caller computed the ticks from
-- ARGV[4]  the next due time after these ticks (Unix ms), or "" when there is none
-- ARGV[5]  "0": skip (overlap) while the last message enqueued is still queued, running or
--          waiting to retry (its entry in the stream, or its status says so)
-- ARGV[6]  how long a claim key lives, in ms
-- ARGV[7]  ticks the caller found missed and does not enqueue (catch-up policy)
-- ARGV[8]  how long a message's status lives once nothing changes it, in ms
-- ARGV[9]  the event stream's length cap (approximate); 0: the queue records no events
-- ARGV[10..] per message: its due time (Unix ms), its task id, its body (three values each)
--
-- Returns {enqueued, skipped, status}: status 1 written; 0 the due time moved (another
-- worker took this tick); -1 the definition changed since it was read; -2 paused;
-- -3 the schedule is gone.
--
-- Invariant: a tick's message is added only by the step that sets its claim key, in the
-- slot of the queue's stream, and only while the due time is the one read: any number of
-- workers racing for a tick enqueue it once.

local id, expected, rev = ARGV[1], ARGV[2], ARGV[3]
local is_trigger = expected == "trigger"
if redis.call("EXISTS", KEYS[1]) == 0 then
    return {0, 0, -3}
end
if not is_trigger then
    local score = redis.call("ZSCORE", KEYS[2], id)
    if not score or tonumber(score) ~= tonumber(expected) then
        return {0, 0, 0}
    end
    if redis.call("HGET", KEYS[1], "rev") ~= rev then
        return {0, 0, -1}
    end
    if redis.call("HGET", KEYS[1], "paused") == "1" then
        redis.call("ZREM", KEYS[2], id)
        return {0, 0, -2}
    end
end
local enqueued, skipped = 0, 0
if not is_trigger and ARGV[5] == "0" then
    local last = redis.call("HGET", KEYS[1], "last_entry")
    local busy = last and #redis.call("XRANGE", KEYS[3], last, last, "COUNT", 1) > 0
    if not busy and KEYS[5] ~= KEYS[1] then
        local state = redis.call("HGET", KEYS[5], "state")
        busy = state == "queued" or state == "delayed" or state == "running"
            or state == "retrying"
    end
    if busy then
        skipped = (#ARGV - 9) / 3
    end
end
if skipped == 0 then
    local ttl = ARGV[6]
    local task = redis.call("HGET", KEYS[1], "task")
    local now = redis.call("TIME")
    now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    local cap = tonumber(ARGV[9])
    for i = 10, #ARGV, 3 do
        local claim = KEYS[6 + 2 * (i - 10) / 3]
        local status = KEYS[7 + 2 * (i - 10) / 3]
        if is_trigger or redis.call("SET", claim, "1", "NX", "PX", ttl) then
            local entry = redis.call("XADD", KEYS[3], "*", "m", ARGV[i + 2])
            redis.call("HSET", status, "state", "queued", "task", task, "updated", now)
            redis.call("PEXPIRE", status, ARGV[8])
            if cap > 0 then
                redis.call("XADD", KEYS[4], "MAXLEN", "~", cap, "*", "event", "sent", "id",
                    ARGV[i + 1], "task", task, "attempt", 1, "time", now, "schedule", id)
            end
            redis.call("HSET", KEYS[1], "last_run", ARGV[i], "last_message", ARGV[i + 1],
                "last_entry", entry)
            enqueued = enqueued + 1
        end
    end
end
if not is_trigger then
    if ARGV[4] == "" then
        redis.call("ZREM", KEYS[2], id)
    else
        redis.call("ZADD", KEYS[2], ARGV[4], id)
    end
end
redis.call("HINCRBY", KEYS[1], "enqueued", enqueued)
if skipped > 0 then
    redis.call("HINCRBY", KEYS[1], "skipped", skipped)
end
if tonumber(ARGV[7]) > 0 then
    redis.call("HINCRBY", KEYS[1], "missed", ARGV[7])
end
return {enqueued, skipped, 1}
