-- progress.lua: record a running message's progress.
--
-- KEYS[1]  the message's status hash
-- ARGV[1]  the fraction done, 0..1
-- ARGV[2]  a short note ("" for none)
-- ARGV[3]  now, in ms
-- ARGV[4]  how long a status lives once nothing changes it, in ms
--
-- Returns 1 written, 0 ignored (the message is not running: its outcome came first).
--
-- Invariant: progress never overwrites a final state.

if redis.call("HGET", KEYS[1], "state") ~= "running" then
    return 0
end
redis.call("HSET", KEYS[1], "progress", ARGV[1], "note", ARGV[2], "updated", ARGV[3])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
return 1
