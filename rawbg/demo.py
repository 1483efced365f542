"""The demo app served by ``python -m rawbg``: FastAPI's background-tasks tutorial.

Only the import line differs from the tutorial. ``POST /send-notification/{email}``
answers at once; the notification is written to ``log.txt`` (in the current
directory) after the response has been sent.
"""

from rawbg import App, BackgroundTasks

app = App()


def write_notification(email: str, message=""):
    with open("log.txt", mode="w") as email_file:
        content = f"notification for {email}: {message}"
        email_file.write(content)


@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(write_notification, email, message="some notification")
    return {"message": "Notification sent in the background"}
