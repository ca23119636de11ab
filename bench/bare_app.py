"""The floor the benchmark compares against: FastAPI with one endpoint and nothing else.

It runs under the same uvicorn settings as the app, so a ratio to it isolates what the
app itself costs per request (auth, database, serialisation), not the server stack.
"""

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/")
async def constant() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/deliveries", status_code=204)
async def receive() -> None:
    """Takes the app's webhook deliveries when `make bench` subscribes one."""


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
