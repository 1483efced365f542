from rawbg.demo import app
from rawbg.testing import serve_app


async def test_demo_app_writes_its_notification_after_the_response(in_tmp_dir):
    async with serve_app(app) as client:
        response = await client.post("/send-notification/a@b.c")
        assert response.status_code == 200
        assert response.json() == {"message": "Notification sent in the background"}
        await client.wait_for_background()
    assert (in_tmp_dir / "log.txt").read_text() == "notification for a@b.c: some notification"
