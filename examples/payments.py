"""Payments with an exactly-once effect on PostgreSQL, on an at-least-once queue.

A message can run twice: a worker that dies after its handler committed but before the
acknowledgement reached Redis leaves the entry pending, and another worker runs it again.
So the handler makes the *effect* happen once: in one database transaction it records the
payment under the message's id (a unique key) and moves the money — a second run finds the
id taken and changes nothing. Commit and record are one step; the acknowledgement may come
any number of times.

    python examples/payments.py setup                  # tables, three accounts with 1000.00
    python examples/payments.py send 30                # 30 payments
    streamwork worker payments:app --burst             # from examples/
    python examples/payments.py report                 # one row per message; balances add up

PostgreSQL: $PAYMENTS_DSN, else postgresql://postgres@127.0.0.1:5432/test; the tables live
in schema $PAYMENTS_SCHEMA (default `payments_demo`). Redis: $STREAMWORK_REDIS_URL.
Set $PAYMENTS_PAUSE_AFTER_COMMIT to a file name to make the first payment to commit write
its worker's pid there and wait 5 s before returning (the test kills the worker then).
"""

from __future__ import annotations

import os
import random
import sys
import time

import psycopg
from psycopg import sql

from streamwork import App, Message

app = App()
DSN = os.environ.get("PAYMENTS_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = sql.Identifier(os.environ.get("PAYMENTS_SCHEMA", "payments_demo"))
ACCOUNTS = ("alice", "bob", "carol")


@app.task(queue="payments", bind=True, max_retries=5)
def pay(message: Message, account: str, amount_cents: int) -> None:
    with psycopg.connect(DSN) as db, db.transaction():
        recorded = db.execute(
            sql.SQL(
                "INSERT INTO {}.payments (message_id, account, amount_cents) VALUES (%s, %s, %s) "
                "ON CONFLICT (message_id) DO NOTHING"
            ).format(SCHEMA),
            (message.id, account, amount_cents),
        ).rowcount
        if recorded:  # the first run to commit moves the money; any later one finds the row
            db.execute(
                sql.SQL(
                    "UPDATE {}.accounts SET balance_cents = balance_cents - %s WHERE name = %s"
                ).format(SCHEMA),
                (amount_cents, account),
            )
    what = "charged" if recorded else "already charged (a redelivery): nothing done"
    print(f"payment {message.id} {account} {amount_cents / 100:.2f}: {what}", flush=True)
    pause = os.environ.get("PAYMENTS_PAUSE_AFTER_COMMIT")
    if pause and recorded and not os.path.exists(pause):
        with open(pause, "w") as committed:  # committed, not yet acknowledged
            committed.write(f"{os.getpid()} {message.id}\n")
        time.sleep(5)


def setup() -> None:
    with psycopg.connect(DSN) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(SCHEMA))
        db.execute(sql.SQL("CREATE SCHEMA {}").format(SCHEMA))
        db.execute(
            sql.SQL(
                "CREATE TABLE {}.accounts (name text PRIMARY KEY, balance_cents bigint NOT NULL)"
            ).format(SCHEMA)
        )
        db.execute(
            sql.SQL(
                "CREATE TABLE {}.payments (message_id text PRIMARY KEY, account text NOT NULL, "
                "amount_cents bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())"
            ).format(SCHEMA)
        )
        for name in ACCOUNTS:
            db.execute(
                sql.SQL("INSERT INTO {}.accounts VALUES (%s, 100000)").format(SCHEMA), (name,)
            )
    print(f"schema {SCHEMA.as_string()} ready: {', '.join(ACCOUNTS)} with 1000.00 each")


def send(count: int) -> None:
    rng = random.Random(11)
    payments = [(rng.choice(ACCOUNTS), rng.randint(100, 5000)) for _ in range(count)]
    pay.send_many(payments)
    total = sum(cents for _, cents in payments)
    print(f"sent {count} payments, {total / 100:.2f} in all")


def report() -> None:
    with psycopg.connect(DSN) as db:
        rows, distinct, charged = db.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT message_id), coalesce(sum(amount_cents), 0) "
                "FROM {}.payments"
            ).format(SCHEMA)
        ).fetchone()
        (balance,) = db.execute(
            sql.SQL("SELECT sum(balance_cents) FROM {}.accounts").format(SCHEMA)
        ).fetchone()
    print(f"{rows} payment rows for {distinct} messages, {charged / 100:.2f} charged")
    start = 100000 * len(ACCOUNTS)
    consistent = start - balance == charged
    print(f"balances: {balance / 100:.2f} left of {start / 100:.2f}: ", end="")
    print("consistent" if consistent else "INCONSISTENT")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["setup"]:
            setup()
        case ["send", count]:
            send(int(count))
        case ["report"]:
            report()
        case _:
            sys.exit(f"usage: {sys.argv[0]} setup | send N | report")
