-- _turns.lua: included (not a script): the order of a partition key's messages, in three
-- keys of the queue's slot, declared by the caller (a script may only touch the keys it is
-- given, or a slot migration would leave it working on keys already moved):
--   order    `NS:{QUEUE}:order:KEY`, the ids of the key's messages not finished, in send
--            order (enqueue.lua appends);
--   turn     `NS:{QUEUE}:turn:KEY`, (id -> body) of the ones a worker read before their turn;
--   ordered  `NS:{QUEUE}:ordered`, the set of keys with an order (purge.lua clears them).
-- A message runs when it is first in its key's order (or not in it at all: a replayed
-- dead letter, which left the order when it died).

-- Whether message `id` must wait for the ones sent before it with its key.
local function must_wait(order, id)
    local head = redis.call("LINDEX", order, 0)
    return head ~= false and head ~= id and redis.call("LPOS", order, id) ~= false
end

-- Message `id` finished (done, dead, cancelled): it leaves the order, and the next one,
-- if a worker read it before its turn, goes back to `ready` to run.
local function leave_turn(order, turn, ordered, key, id, ready)
    if redis.call("LINDEX", order, 0) ~= id then
        redis.call("LREM", order, 1, id) -- finished out of turn (or not in the order)
    else
        redis.call("LPOP", order)
    end
    local next_id = redis.call("LINDEX", order, 0)
    if not next_id then
        redis.call("SREM", ordered, key)
        return
    end
    local body = redis.call("HGET", turn, next_id)
    if body then
        redis.call("HDEL", turn, next_id)
        redis.call("XADD", ready, "*", "m", body)
    end
end

-- Message `id` was read before its turn: it waits with its body, unless its turn came
-- meanwhile (the one before it finished after the start step looked): then it goes back
-- to `ready` at once.
local function wait_turn(order, turn, id, body, ready)
    if must_wait(order, id) then
        redis.call("HSET", turn, id, body)
    else
        redis.call("XADD", ready, "*", "m", body)
    end
end
