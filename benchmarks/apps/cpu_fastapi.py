"""FastAPI serving the scaling scenario's CPU-bound endpoint (see cpu_rawbg)."""

from fastapi import FastAPI

from .cpu_work import burn

app = FastAPI()


@app.post("/send-notification/{email}")
async def work(email: str) -> dict[str, int]:
    return {"total": burn()}
