from rawbg.demo import app
from rawbg.testing import serve_app


async def test_demo_app_writes_its_notification_after_the_response(in_tmp_dir):
    async with serve_app(app) as client:
        response = await client.post("/send-notification/a@b.c")
        assert response.status_code == 200
        assert response.json() == {"message": "Notification sent in the background"}
        await client.wait_for_background()
    assert (in_tmp_dir / "log.txt").read_text() == "notification for a@b.c: some notification"


async def test_an_http_exception_whose_detail_is_not_json_still_gets_a_500(caplog):
    from rawbg import App, HTTPException

    app = App()

    @app.get("/")
    async def index():
        raise HTTPException(409, detail=object())

    async with serve_app(app) as client:
        response = await client.get("/")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        assert (await client.get("/")).status_code == 500  # and the server keeps serving
    assert any("cannot encode the detail" in r.getMessage() for r in caplog.records)
