"""The Celery original of this example (for reading beside tasks.py; not run by the tests,
which need no Celery): a retried task, a chord, a task that routes and expires, and a beat
schedule.

    celery -A celery_original worker -B
"""

from celery import Celery, chord, group
from celery.schedules import crontab

app = Celery("quotes", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1")
PRICES = {"ACME": 12.0, "GLOBEX": 30.0, "INITECH": 21.0}
flaky = {"GLOBEX": 1}


@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=5, default_retry_delay=2)
def fetch_price(self, symbol):
    if flaky.get(symbol, 0) > 0:  # the quotes API drops the first call for GLOBEX
        flaky[symbol] -= 1
        raise ConnectionError(f"quotes API unreachable for {symbol}")
    return PRICES[symbol]


@app.task
def average(prices):
    return round(sum(prices) / len(prices), 2)


@app.task(bind=True, max_retries=3)
def notify(self, text):
    try:
        print(f"notify: {text}")
    except OSError as exc:
        raise self.retry(exc=exc, countdown=10) from exc


@app.task
def nightly_report():
    return "report sent"


app.conf.beat_schedule = {
    "nightly-report": {"task": "celery_original.nightly_report", "schedule": crontab(hour=2)},
}


def main():
    result = chord(group(fetch_price.s(s) for s in PRICES), average.s())()
    print("average:", result.get(timeout=30))
    notify.apply_async(args=("prices updated",), queue="lopri", expires=3600)


if __name__ == "__main__":
    main()
