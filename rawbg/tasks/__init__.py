"""Background work: what a request queues, and how it runs after the response.

It knows neither the app nor the server: they hand it calls and run what it gives back.

* `calls`: `BackgroundTask`, `BackgroundTasks` (public through `rawbg.background`).
* `after_response`: `AfterResponse`, a request's tasks and clean-up, run in
  order, owner of their pending count and journal entries.
* `work_group`: `WorkGroup`, a connection's running work, children of its task.
* `pending`: `PendingWork`, the process-wide bound on queued tasks.
* `policy`: ``@rawbg.task(retries, backoff, durable)``.
* `failure_log`: one traceback per failure site per minute.
* `journal`: the task journal (`store` interface, `sqlite` store, `writer` thread).
"""
