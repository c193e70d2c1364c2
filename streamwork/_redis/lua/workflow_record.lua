-- workflow_record.lua: record the final outcomes of a workflow's children; release what
-- they unblock.
--
-- KEYS[1]  the workflow hash (NS:{wf:ID}:workflow)
-- KEYS[2]  the workflow's "finished" list (NS:{wf:ID}:finished: what waiters block on)
-- ARGV[1]  now, in ms
-- ARGV[2..] per child, three values: its node index (a task node); "done" or "failed"
--          (dead-lettered or cancelled); its value, msgpack: its result, or its ChildFailed
--          (an ext value). One call records every child of one workflow a worker settles
--          together (a big group: one call per settle batch, not one per child).
--
-- The workflow hash holds the tree, written once at send: per node i, "k:i" its kind
-- (t task, c chain, g group, h chord), "p:i" its parent ("-" for the root), "x:i" its
-- 1-based position in the parent, "c:i" a composite's children ("3,4,5"), "m:i" a task
-- node's message spec (opaque here), "o:i" a chord's on_failure, "l:i" a group's count of
-- children not yet done. State: "q:i" released, "in:i" a released task's input (the value
-- it receives first), "s:i" done | failed, "r:i" a finished node's value, "f:i" how many
-- of a composite's children are failed, "a:i" set on a failed task whose failure a
-- continue-chord absorbed, "rel:i" the task nodes a child's outcome released.
--
-- Returns {transitions, node, spec, input, node, spec, input, ...}: transitions is "" or
-- the workflow's new states, comma-separated ("done", "failed", "resumed": a replayed
-- child undid the only failure); then each task node to send now, with its spec and its
-- input ("" for none). {"gone"} when the workflow no longer exists (it expired).
--
-- Invariants: the outcome of one child is recorded once (by node index): a second record
-- of it (a re-run after a crash before its XACK) changes nothing and returns the same
-- releases, which are sent with idempotency keys, so each node is sent exactly once. A node
-- is released only here, atomically with the outcome that unblocked it, so of any number
-- of children finishing at once exactly one releases the next node.

local wf, finished = KEYS[1], KEYS[2]
local now = ARGV[1]
local leaf, outcome, value, state -- the child being recorded

if not redis.call("HGET", wf, "state") then
    return {"gone"}
end

local function get(field)
    return redis.call("HGET", wf, field)
end

local function children(node)
    local out = {}
    for child in string.gmatch(get("c:" .. node), "[^,]+") do
        out[#out + 1] = child
    end
    return out
end

local released = {}
local transitions = {}

local function release(node, input)
    local kind = get("k:" .. node)
    if kind == "t" then
        released[#released + 1] = node
        redis.call("HSET", wf, "q:" .. node, "1")
        if input then
            redis.call("HSET", wf, "in:" .. node, input)
        end
    elseif kind == "g" then
        for _, child in ipairs(children(node)) do
            release(child, input)
        end
    else -- a chain starts with its first node, a chord with its header
        release(children(node)[1], input)
    end
end

-- A msgpack array of values that are msgpack already (byte-level: no value is re-encoded).
local function array_of(items)
    local n = #items
    local head
    if n < 16 then
        head = string.char(0x90 + n)
    elseif n < 65536 then
        head = string.char(0xdc, math.floor(n / 256), n % 256)
    else
        head = string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
            math.floor(n / 256) % 256, n % 256)
    end
    return head .. table.concat(items)
end

local function finish(new_state)
    local ttl = get("ttl")
    redis.call("HSET", wf, "state", new_state, "finished", now)
    redis.call("PEXPIRE", wf, ttl)
    redis.call("RPUSH", finished, new_state)
    redis.call("LTRIM", finished, -1, -1)
    redis.call("PEXPIRE", finished, ttl)
    transitions[#transitions + 1] = new_state
    state = new_state
end

-- `node` finished with the value r:node: walk up, releasing what it unblocks.
local function complete(node)
    while true do
        local parent = get("p:" .. node)
        if parent == "-" then
            finish("done")
            return
        end
        local kind, position = get("k:" .. parent), tonumber(get("x:" .. node))
        local result = get("r:" .. node)
        if kind == "c" then
            local steps = children(parent)
            if position < #steps then
                release(steps[position + 1], result)
                return
            end
        elseif kind == "h" then
            if position == 1 then -- the header is done: the callback gets its results
                release(children(parent)[2], result)
                return
            end
        else -- a group is done when its last child is
            if redis.call("HINCRBY", wf, "l:" .. parent, -1) > 0 then
                return
            end
            local results = {}
            for i, child in ipairs(children(parent)) do
                results[i] = get("r:" .. child)
            end
            result = array_of(results)
        end
        redis.call("HSET", wf, "s:" .. parent, "done", "r:" .. parent, result)
        node = parent
    end
end

-- Is `group` the header of a chord whose on_failure is "continue"?
local function absorbs(group)
    local chord = get("p:" .. group)
    return chord ~= "-" and get("k:" .. chord) == "h" and get("x:" .. group) == "1"
        and get("o:" .. chord) == "continue"
end

-- Task node `leaf` failed: its parents fail up to the root, or up to a continue-chord's
-- header, where the failed member counts as finished with the failure as its value.
local function fail(node)
    while true do
        local parent = get("p:" .. node)
        if parent == "-" then
            finish("failed")
            return
        end
        if get("k:" .. parent) == "g" and absorbs(parent) then
            redis.call("HSET", wf, "a:" .. leaf, "1", "r:" .. node, value)
            complete(node)
            return
        end
        if redis.call("HINCRBY", wf, "f:" .. parent, 1) > 1 then
            return -- failed already, by another child
        end
        redis.call("HSET", wf, "s:" .. parent, "failed")
        node = parent
    end
end

-- The failed task node `leaf` succeeded after all (replayed from the dead letters): undo
-- its failure up the tree, as far as no other failure holds a parent failed.
local function unfail(node)
    while true do
        local parent = get("p:" .. node)
        if parent == "-" then
            redis.call("HSET", wf, "state", "running")
            redis.call("HDEL", wf, "finished")
            redis.call("PERSIST", wf)
            redis.call("DEL", finished)
            transitions[#transitions + 1] = "resumed"
            state = "running"
            return
        end
        if redis.call("HINCRBY", wf, "f:" .. parent, -1) > 0 then
            return
        end
        redis.call("HDEL", wf, "s:" .. parent)
        node = parent
    end
end

-- Record one child; its releases are appended to `released`.
local function record()
    local first = #released + 1
    local prior = get("s:" .. leaf)
    if prior == "done" or (prior == "failed" and outcome == "failed") then
        -- recorded already: the same releases again (their sends are idempotent)
        local before = get("rel:" .. leaf)
        if before then
            for node in string.gmatch(before, "[^,]+") do
                released[#released + 1] = node
            end
        end
        return
    end
    redis.call("HSET", wf, "s:" .. leaf, outcome, "r:" .. leaf, value, "updated", now)
    if state == "cancelled" then
        return -- recorded, and nothing more is released
    end
    if prior == "failed" then
        if get("a:" .. leaf) then
            return -- a continue-chord took its failure as final: the callback had it
        end
        unfail(leaf)
    end
    if outcome == "done" then
        complete(leaf)
    else
        fail(leaf)
    end
    if #released >= first then
        redis.call("HSET", wf, "rel:" .. leaf, table.concat(released, ",", first))
    end
end

for at = 2, #ARGV, 3 do
    leaf, outcome, value = ARGV[at], ARGV[at + 1], ARGV[at + 2]
    state = redis.call("HGET", wf, "state")
    record()
end

local out = {table.concat(transitions, ",")}
for _, node in ipairs(released) do
    out[#out + 1] = node
    out[#out + 1] = get("m:" .. node)
    out[#out + 1] = get("in:" .. node) or ""
end
return out
