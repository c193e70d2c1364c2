-- _turns.lua: included (not a script): the order of a partition key's messages.
-- `PREFIX order:KEY` lists the ids of the key's messages not finished, in send order
-- (enqueue.lua appends); `PREFIX turn:KEY` holds (id -> body) the ones a worker read before
-- their turn; `PREFIX ordered` is the set of keys with an order (purge.lua clears them). A
-- message runs when it is first in its key's order (or not in it at all: a replayed dead
-- letter, which left the order when it died).

-- Whether message `id` of partition key `key` must wait for the ones sent before it.
local function must_wait(prefix, key, id)
    local order = prefix .. "order:" .. key
    local head = redis.call("LINDEX", order, 0)
    return head ~= false and head ~= id and redis.call("LPOS", order, id) ~= false
end

-- Message `id` finished (done, dead, cancelled): it leaves the order, and the next one,
-- if a worker read it before its turn, goes back to `ready` to run.
local function leave_turn(prefix, key, id, ready)
    local order = prefix .. "order:" .. key
    if redis.call("LINDEX", order, 0) ~= id then
        redis.call("LREM", order, 1, id) -- cancelled before its turn (or not in the order)
    else
        redis.call("LPOP", order)
    end
    local next_id = redis.call("LINDEX", order, 0)
    if not next_id then
        redis.call("SREM", prefix .. "ordered", key)
    end
    if next_id then
        local waiting = prefix .. "turn:" .. key
        local body = redis.call("HGET", waiting, next_id)
        if body then
            redis.call("HDEL", waiting, next_id)
            redis.call("XADD", ready, "*", "m", body)
        end
    end
end

-- Message `id` was read before its turn: it waits with its body, unless its turn came
-- meanwhile (the one before it finished after the start step looked): then it goes back
-- to `ready` at once.
local function wait_turn(prefix, key, id, body, ready)
    if must_wait(prefix, key, id) then
        redis.call("HSET", prefix .. "turn:" .. key, id, body)
    else
        redis.call("XADD", ready, "*", "m", body)
    end
end
