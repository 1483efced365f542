"""The same upload endpoint on FastAPI (no body limit: FastAPI has none by default).

``python -m uvicorn benchmarks.apps.upload_fastapi:app`` (``python -m benchmarks.uploads``).
"""

from fastapi import FastAPI, UploadFile

app = FastAPI()


@app.post("/upload")
async def upload(file: UploadFile):
    return {"size": file.size}


@app.get("/")
async def root():
    return {}
