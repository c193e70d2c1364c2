"""The Python side of the Node producer example: `streamwork worker tasks:app`."""

from streamwork import App, Message

app = App()


@app.task(queue="node", store_result=True)
def add(a: int, b: int) -> int:
    return a + b


@app.task(queue="node")
def greet(name: str, times: int = 1) -> None:
    for _ in range(times):
        print(f"hello, {name}", flush=True)


@app.subscriber("node.events", group="audit", start="beginning")
def audit(message: Message) -> None:
    print(f"event {message.topic}: {message.payload}", flush=True)
