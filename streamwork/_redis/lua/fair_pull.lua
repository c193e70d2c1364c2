-- fair_pull.lua: feed a fair task's messages into its queue's stream, round-robin between
-- keys, as many as a worker is about to read.
--
-- KEYS[1]  the queue's stream
-- KEYS[2]  the task's ring of keys with a backlog (a list, rotated)
-- KEYS[3]  the task's set of those keys
-- ARGV[1]  the per-key key prefix (NS:{QUEUE}:fair:TASK:)
-- ARGV[2]  how many to feed
-- ARGV[3]  per-key concurrency (0: none)
--
-- Returns how many messages were fed.
--
-- Invariants: a message leaves its key's list only together with the XADD that queues it
-- (one step: never lost, never doubled); keys take turns, so one key's backlog never
-- delays another key's messages by more than one turn each (a per-key rate limit is
-- applied when the message starts, by start.lua); a key with no backlog and
-- nothing running is forgotten. The per-key keys are named from ARGV[1] (the ring says
-- which keys exist); all share the queue's hash tag, so on a cluster they are in this
-- script's slot. While that slot migrates, Redis refuses the script at the first key
-- already moved ("non local key") instead of letting it read that key as empty; what ran
-- before that point is whole steps (a turn of the ring, a message fed), and the worker
-- retries until the slot has moved (redis_errors.is_slot_moving).

-- #include fair_pull

return fair_pull(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
