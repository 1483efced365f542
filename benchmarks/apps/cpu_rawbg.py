"""rawbg serving the scaling scenario's CPU-bound endpoint: ``GET /work``."""

from rawbg import App

from .cpu_work import burn

app = App()


@app.get("/work")
async def work() -> dict[str, int]:
    return {"total": burn()}
