"""A small shop: the app that examples/test_shop.py tests without a redis-server."""

from streamwork import App, Message, Reject, Retry

app = App()  # $STREAMWORK_REDIS_URL, else redis://localhost:6379/0; the tests use memory://

stock = {"apple": 3, "pear": 0}
shipped: list[str] = []
audit: list[str] = []


@app.task(store_result=True)
def reserve(item: str, quantity: int) -> int:
    """Take `quantity` of `item` from stock; returns what is left."""
    if item not in stock:
        raise Reject(f"unknown item {item!r}")
    if stock[item] < quantity:
        raise Retry(delay=3600, reason=f"{item} out of stock")  # try again in an hour
    stock[item] -= quantity
    return stock[item]


@app.task(max_retries=2)
def ship(order_id: int) -> None:
    shipped.append(f"order {order_id}")


@app.subscriber("orders.created", group="audit", start="beginning")
def record(message: Message) -> None:
    audit.append(f"order {message.payload['id']} by {message.payload['customer']}")
