"""rawbg serving the scaling scenario's CPU-bound endpoint.

It answers the path every load generator of the harness sends to (the
tutorial's ``POST /send-notification/{email}``), with about 1 ms of CPU work
in place of the background task.
"""

from rawbg import App

from .cpu_work import burn

app = App()


@app.post("/send-notification/{email}")
async def work(email: str) -> dict[str, int]:
    return {"total": burn()}
