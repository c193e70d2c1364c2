"""celery_original.py, ported to streamwork: the same tasks, chord, routing, expiry and
schedule (each line that changed says what it was in Celery).

    streamwork worker tasks:app      # the worker ticks the schedule too: no beat process
"""

from __future__ import annotations

from streamwork import App, Retry

app = App()  # Celery("quotes", broker=..., backend=...): results live in the same Redis
app.queue("lopri")  # a queue workers serve though no task is declared on it
PRICES = {"ACME": 12.0, "GLOBEX": 30.0, "INITECH": 21.0}
flaky = {"GLOBEX": 1}
notified: list[str] = []


# Celery: autoretry_for=(ConnectionError,), max_retries=5, default_retry_delay=2
@app.task(store_result=True, retry_on=(ConnectionError,), max_retries=5, retry_delay=2)
def fetch_price(symbol: str) -> float:
    if flaky.get(symbol, 0) > 0:  # the quotes API drops the first call for GLOBEX
        flaky[symbol] -= 1
        raise ConnectionError(f"quotes API unreachable for {symbol}")
    return PRICES[symbol]


@app.task(store_result=True)
def average(prices: list[float]) -> float:
    return round(sum(prices) / len(prices), 2)


@app.task(max_retries=3)  # Celery: bind=True, then self.retry(exc=exc, countdown=10)
def notify(text: str) -> None:
    try:
        notified.append(text)
    except OSError as exc:
        raise Retry(delay=10, exc=exc) from None


# Celery: beat_schedule = {"nightly-report": {..., "schedule": crontab(hour=2)}}
@app.periodic(cron="0 2 * * *", name="nightly-report")
def nightly_report() -> str:
    return "report sent"
