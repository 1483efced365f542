"""FastAPI serving the scaling scenario's CPU-bound endpoint: ``GET /work``."""

from fastapi import FastAPI

from .cpu_work import burn

app = FastAPI()


@app.get("/work")
async def work() -> dict[str, int]:
    return {"total": burn()}
