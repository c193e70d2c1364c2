// A streamwork producer in Node.js, following docs/PROTOCOL.md (version 1) and nothing else:
// a plain task, a delayed task, an idempotent (keyed) task sent twice, a topic event, and a
// stored result read back with BLMOVE.
//
//   STREAMWORK_REDIS_URL=redis://127.0.0.1:6379/0 node producer.js
//
// The Python side is examples/node/tasks.py (`streamwork worker tasks:app`).
"use strict";

const crypto = require("node:crypto");
const Redis = require("ioredis");
const { encode, decode } = require("@msgpack/msgpack");

const NS = process.env.STREAMWORK_NAMESPACE || "sw";
const queueKey = (queue, what) => `${NS}:{${queue}}:${what}`;
const topicStream = (topic) => `${NS}:topic:{${topic}}:stream`;

// A message id: 32 lowercase hex digits of random bits.
const newId = () => crypto.randomBytes(16).toString("hex");

function message(task, args, kwargs, ts, id = newId()) {
  // Map keys are strings at every depth; `ts` must be an integer (Unix ms). Without `id`,
  // the message's id is its stream entry's (entryMessageId).
  const body = { v: 1, task, args, kwargs, ts };
  if (id !== null) body.id = id;
  return Buffer.from(encode(body));
}

// The id of a message sent without one: its entry id's milliseconds and sequence, its band
// (0: the queue's own stream) and the first 11 hex digits of the SHA-256 of the queue's name.
function entryMessageId(queue, entryId, band = 0) {
  const [ms, seq] = entryId.split("-").map(BigInt);
  const hash = crypto.createHash("sha256").update(queue).digest("hex").slice(0, 11);
  return ms.toString(16).padStart(12, "0") + seq.toString(16).padStart(8, "0") + band + hash;
}

// Idempotent enqueue: GET the key; if held, its value is the id queued first. Otherwise SET
// it (PX ttl) and XADD (or ZADD for a delayed message) in the same atomic step.
const ENQUEUE_UNIQUE = `
local holder = redis.call("GET", KEYS[1])
if holder then return holder end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[3])
if tonumber(ARGV[4]) > 0 then
  redis.call("ZADD", KEYS[3], ARGV[4], ARGV[2])
else
  redis.call("XADD", KEYS[2], "*", "m", ARGV[2])
end
return ARGV[1]`;

async function main() {
  const redis = new Redis(process.env.STREAMWORK_REDIS_URL || "redis://127.0.0.1:6379/0");
  try {
    const queue = "node";

    // 1. A plain task, whose result we read back: sent without an id, as streamwork's own
    //    producers send one; its id is read off the entry XADD made.
    const add = message("add", [2, 3], {}, Date.now(), null);
    const addId = entryMessageId(queue, await redis.xadd(queueKey(queue, "stream"), "*", "m", add));
    await redis.sadd(`${NS}:queues`, queue);
    console.log(`sent add ${addId}`);

    // 2. A delayed task: ZADD to the delayed set, scored by its due time; ts = the due time.
    const due = Date.now() + 500;
    await redis.zadd(queueKey(queue, "delayed"), due, message("greet", ["later"], {}, due));
    console.log("sent greet (delayed 500 ms)");

    // 3. An idempotent task, sent twice with one key: queued once.
    const key = "order-42";
    const ids = [];
    for (let i = 0; i < 2; i++) {
      const body = message("greet", ["keyed"], { times: 1 }, Date.now());
      const holder = await redis.eval(
        ENQUEUE_UNIQUE, 3,
        queueKey(queue, `dedupe:${key}`), queueKey(queue, "stream"), queueKey(queue, "delayed"),
        decode(body).id, body, 86400000, 0,
      );
      ids.push(holder.toString());
    }
    console.log(`keyed sends returned ${ids[0] === ids[1] ? "one id" : "two ids"}: ${ids[0]}`);

    // 4. A topic event: `topic` and `payload` in place of `task`, `args`, `kwargs`.
    const event = encode({ v: 1, id: newId(), topic: "node.events", payload: { n: 7 }, ts: Date.now() });
    await redis.xadd(topicStream("node.events"), "*", "m", Buffer.from(event));
    await redis.sadd(`${NS}:topics`, "node.events");
    console.log("published node.events");

    // 5. The result of `add`: BLMOVE on NS:{QUEUE}:result:ID (the message id) waits for it.
    const resultKey = queueKey(queue, `result:${addId}`);
    const raw = await redis.blmoveBuffer(resultKey, resultKey, "RIGHT", "RIGHT", 20);
    if (raw === null) throw new Error("no result within 20 s: is a worker running?");
    const result = decode(raw);
    console.log(result.ok ? `result of add: ${result.value}` : `add failed: ${result.error}`);
  } finally {
    redis.disconnect();
  }
}

main().catch((error) => {
  console.error(`error: ${error.message}`);
  process.exit(1);
});
