"""One upload endpoint on rawbg: ``file: UploadFile``, answered with its size.

Served by ``python -m rawbg benchmarks.apps.upload_rawbg:app``
(``python -m benchmarks.uploads`` starts it).
"""

from rawbg import App, UploadFile

app = App()


@app.post("/upload", max_body_size=2 * 1024**3)
async def upload(file: UploadFile):
    return {"size": file.size}


@app.get("/")
async def root():
    return {}
