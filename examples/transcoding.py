"""Video transcoding: a long task that reports its progress, can be cancelled, and survives
a worker restart without starting over.

    streamwork worker transcoding:app --grace 1        # from examples/
    python examples/transcoding.py send holiday.mp4    # prints the message id
    streamwork status transcoding:app ID               # state, progress 35%, "chunk 7/20"
    streamwork cancel transcoding:app ID               # stops it within a chunk

The handler transcodes chunk by chunk and records a checkpoint after each chunk (in Redis,
next to the queue), so a run cut off by a restart — the worker stopped past its `--grace`,
the machine rebooted — is delivered again and resumes at the next chunk instead of
redoing the whole video. An async handler is cancelled outright by `cancel`; a sync one
would check `message.cancelled` between chunks.

Redis: $STREAMWORK_REDIS_URL. $CHUNK_SECONDS sets how long one chunk takes (default 0.25).
"""

from __future__ import annotations

import asyncio
import os
import sys

from streamwork import App, Message

app = App()
CHUNKS = 20
CHUNK_SECONDS = float(os.environ.get("CHUNK_SECONDS", "0.25"))


@app.task(queue="video", bind=True, timeout=3600, max_retries=2)
async def transcode(message: Message, video: str) -> str:
    redis = app.connection.async_redis()
    checkpoint = f"transcode:{message.id}"
    done = int(await redis.get(checkpoint) or 0)
    if done:
        print(f"{video}: resuming at chunk {done + 1}/{CHUNKS} (delivery {message.delivery_count})",
              flush=True)  # fmt: skip
    for chunk in range(done, CHUNKS):
        await asyncio.sleep(CHUNK_SECONDS)  # ffmpeg on one chunk
        await redis.set(checkpoint, chunk + 1, ex=86400)
        print(f"{video}: chunk {chunk + 1}/{CHUNKS}", flush=True)
        message.progress((chunk + 1) / CHUNKS, f"chunk {chunk + 1}/{CHUNKS}")
    await redis.delete(checkpoint)
    print(f"{video}: done", flush=True)
    return f"{video}.webm"


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["send", video]:
            print(transcode.send(video).id)
        case _:
            sys.exit(f"usage: {sys.argv[0]} send VIDEO")
