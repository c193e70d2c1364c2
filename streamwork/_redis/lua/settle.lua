-- settle.lua: record the outcomes of a batch of runs and acknowledge their entries, atomically.
--
-- KEYS[1]   the stream
-- KEYS[2]   the delayed set (retries go there)
-- KEYS[3]   the dead-letter stream
-- KEYS[4]   the queue's stats hash (running totals: done, retry, dead, runs, run_ms, and
--           waited / wait_ms over the runs whose wait is known)
-- KEYS[5]   the event stream of the queue (or of the topic's subscriber group)
-- KEYS[6..] result keys (lists), status hashes and partition keys' order keys (three in a
--           row: order, turn, ordered; see _turns.lua), referenced by index from the outcomes
-- ARGV[1]   consumer group
-- ARGV[2]   consumer name
-- ARGV[3]   "1": the entries are still pending — check ownership, then XACK;
--           "0": they were acknowledged on receipt (ack mode auto) — write outcomes only
-- ARGV[4]   "1": XDEL each acknowledged entry (queues: a stream holds backlog + in-flight only)
-- ARGV[5]   result time-to-live in milliseconds
-- ARGV[6]   the outcomes, msgpack-encoded (one argument instead of seventeen per outcome
--           keeps the client's command packing off the hot path): an array of arrays of
--           seventeen values each (rows.py: SettleValues):
--           kind ("ack" | "done" | "retry" | "dead" | "cancelled" | "expired" | "held" |
--           "wait" | "turn"),
--           entry id, data, score, result key index, result, wait ms (queued before the
--           run; -1: unknown, the message had no `ts`), run ms (-1: no handler ran), status
--           key index, state, error, message id, task, attempt, held list key index,
--           partition key ("": none), its order keys' index (0: none); or, for a plain
--           "done" (no result, error, held list, partition key or event), six values
--           (rows.py: PlainDoneValues):
--           entry id, wait ms, run ms, status key index (its state "done"), attempt, and
--           the task of a recorded message that ran once and reported no progress, whose
--           status becomes the compact record (_status.lua), written with one SET ("":
--           the status hash's fields are written)
--             ack:       acknowledge on receipt (ack mode auto); the run's outcome comes later
--             done:      nothing to write but the result
--             retry:     ZADD KEYS[2] score data     (data = the next attempt's message)
--             dead:      XADD KEYS[3] * m data       (data = the dead letter)
--             cancelled: nothing to write: the message was cancelled (not a failure)
--             expired:   nothing to write: it was not started by its deadline (`expires`)
--             held:      ZADD KEYS[2] score data     (held back by a rate limit, or the
--                        handler raised RateLimited: the same attempt, due later)
--             wait:      RPUSH KEYS[index] data      (held back by a concurrency limit:
--                        release_held.lua sends it back when a slot is free)
--             turn:      read before its partition key's turn: waits (see _turns.lua)
--           result key index 0 means no result is stored; else RPUSH KEYS[index] result.
--           status key index 0 means no status (topics, acks); else HSET KEYS[index] the
--           state ("done", "retrying", "failed", "dead", "cancelled", "delayed" (held),
--           "queued" (wait)) and error.
-- ARGV[7]   how long a status lives once nothing changes it, in ms
-- ARGV[8]   now, in ms (the status's `updated`)
-- ARGV[9]   the event stream's length cap (approximate); 0: the queue records no events:
--           else each outcome with a status writes its event (retried, done, failed,
--           dead, cancelled) with its status; held-back messages write none (they did not
--           change state: still waiting to run)
--           A message with a partition key that is done, dead or cancelled leaves its key's
--           order, and the next one goes back to the stream if it waits for its turn.
--
-- Returns one integer per outcome: 1 written; 0 dropped because another consumer owns the
-- entry now ("lost ownership": the scanner gave it to another worker, whose outcome counts);
-- -1 dropped because the entry is in no consumer's pending list any more (another worker
-- claimed and acknowledged it, or its stream or group was deleted, e.g. by FLUSHALL).
--
-- Invariant: an outcome is written only by the entry's current owner and only together with
-- the XACK of its entry, so a crash between them can neither lose nor duplicate the decision.

local group, consumer = ARGV[1], ARGV[2]
local pending, delete = ARGV[3] == "1", ARGV[4] == "1"
local ttl = tonumber(ARGV[5])
local written = {}
local status_ttl, now_ms, cap = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local EVENTS = {done = "done", retry = "retried", cancelled = "cancelled", expired = "expired"}
local totals = {ack = 0, done = 0, retry = 0, dead = 0, cancelled = 0, expired = 0, held = 0,
    wait = 0, turn = 0, runs = 0, waited = 0, wait_ms = 0, run_ms = 0}

local outcomes = cmsgpack.unpack(ARGV[6])
local FINISHED = {done = true, dead = true, cancelled = true, expired = true}
-- a compact record is "done" US attempt .. STAMP .. task (see _status.lua)
local STAMP = "\31" .. now_ms .. "\31" .. consumer .. "\31"

-- #include turns
-- #include status

-- Ownership of the whole batch in one XPENDING: this consumer's pending entries (a worker
-- holds at most its concurrency and batches, so the limit below takes them all). An entry
-- not among them is checked alone (another consumer's now, or not pending at all); so is
-- every entry if the reply may be cut short.
local mine = nil
if pending and #outcomes > 1 then
    local limit = 2 * #outcomes + 1000
    local reply = redis.pcall("XPENDING", KEYS[1], group, "-", "+", limit, consumer)
    if type(reply) == "table" and not reply.err and #reply < limit then
        mine = {}
        for _, entry in ipairs(reply) do
            mine[entry[1]] = true
        end
    end
end

local acked = {}
for _, outcome in ipairs(outcomes) do
    local kind, id, data, score, result_key, result, wait_ms, run_ms, status_key, state
    local error, message_id, task, attempt, held, partition_key, order
    local record = nil -- a compact record instead of the status hash's fields
    if #outcome == 6 then -- a plain "done": entry id, wait ms, run ms, status key, attempt
        kind, id, wait_ms, run_ms, status_key = "done", outcome[1], outcome[2], outcome[3],
            outcome[4]
        data, score, result_key, result, state, error = "", 0, 0, "", "done", ""
        message_id, task, attempt, held, partition_key, order = "", "", outcome[5], 0, "", 0
        if outcome[6] ~= "" then -- the task: a recorded message's compact record
            record = "done\31" .. attempt .. STAMP .. outcome[6]
        end
    else
        kind, id, data, score = outcome[1], outcome[2], outcome[3], outcome[4]
        result_key, result = outcome[5], outcome[6]
        wait_ms, run_ms = outcome[7], outcome[8]
        status_key, state, error = outcome[9], outcome[10], outcome[11]
        message_id, task, attempt = outcome[12], outcome[13], outcome[14]
        held = outcome[15]
        partition_key, order = outcome[16], outcome[17]
    end
    local owned, gone = true, false
    if pending and not (mine and mine[id]) then
        -- pcall: a missing group (NOGROUP) means the entry is gone, not a failed batch
        local reply = redis.pcall("XPENDING", KEYS[1], group, id, id, 1)
        local entry = type(reply) == "table" and not reply.err and reply[1] or nil
        gone = entry == nil
        owned = entry ~= nil and entry[2] == consumer
    end
    if owned then
        if kind == "retry" or kind == "held" then
            redis.call("ZADD", KEYS[2], score, data)
        elseif kind == "wait" then
            redis.call("RPUSH", KEYS[held], data)
        elseif kind == "turn" then
            wait_turn(KEYS[order], KEYS[order + 1], message_id, data, KEYS[1])
        elseif kind == "dead" then
            redis.call("XADD", KEYS[3], "*", "m", data)
        end
        if order > 0 and FINISHED[kind] then
            leave_turn(KEYS[order], KEYS[order + 1], KEYS[order + 2], partition_key, message_id,
                KEYS[1])
        end
        if result_key > 0 then
            local key = KEYS[result_key]
            redis.call("DEL", key)
            redis.call("RPUSH", key, result)
            redis.call("PEXPIRE", key, ttl)
        end
        if cap > 0 and kind ~= "ack" and kind ~= "held" and kind ~= "wait" and kind ~= "turn"
                and message_id ~= "" then
            -- a message cancelled while queued had its event when it was cancelled
            local was_cancelled = kind == "cancelled" and status_key > 0
                and status_state(KEYS[status_key]) == "cancelled"
            if not was_cancelled then
                redis.call("XADD", KEYS[5], "MAXLEN", "~", cap, "*", "event",
                    EVENTS[kind] or state, "id", message_id, "task", task, "attempt", attempt,
                    "time", now_ms, "worker", consumer, "error", error)
            end
        end
        if record and status_key > 0 then
            redis.call("SET", KEYS[status_key], record, "PX", status_ttl)
        elseif status_key > 0 then
            local key = KEYS[status_key]
            if run_ms >= 0 and attempt > 0 and task ~= "" then
                -- a handler ran (no start step may have said so, nor a send named the task)
                redis.call("HSET", key, "state", state, "updated", now_ms, "attempts", attempt,
                    "worker", consumer, "task", task)
            elseif run_ms >= 0 and attempt > 0 then
                redis.call("HSET", key, "state", state, "updated", now_ms, "attempts", attempt,
                    "worker", consumer)
            else
                redis.call("HSET", key, "state", state, "updated", now_ms)
            end
            if error ~= "" then
                redis.call("HSET", key, "error", error)
            end
            if kind == "retry" or kind == "held" then
                redis.call("HSET", key, "due", score, "body", data)
                redis.call("PEXPIREAT", key, score + status_ttl)
            else
                redis.call("PEXPIRE", key, status_ttl)
            end
        end
        acked[#acked + 1] = id
        totals[kind] = totals[kind] + 1
        if run_ms >= 0 then
            totals.runs = totals.runs + 1
            totals.run_ms = totals.run_ms + run_ms
            if wait_ms >= 0 then
                totals.waited = totals.waited + 1
                totals.wait_ms = totals.wait_ms + wait_ms
            end
        end
        written[#written + 1] = 1
    elseif gone then
        written[#written + 1] = -1
    else
        written[#written + 1] = 0
    end
end
-- one XACK and one XDEL for the batch (in this same atomic step as the outcomes)
for first = 1, #acked, 1000 do
    local ids = {unpack(acked, first, math.min(first + 999, #acked))}
    if pending then
        redis.call("XACK", KEYS[1], group, unpack(ids))
    end
    if delete then
        redis.call("XDEL", KEYS[1], unpack(ids))
    end
end
for _, name in ipairs({"done", "retry", "dead", "cancelled", "expired", "held", "wait", "turn",
        "runs", "waited", "wait_ms", "run_ms"}) do
    if totals[name] > 0 then
        redis.call("HINCRBY", KEYS[4], name, totals[name])
    end
end
return written
