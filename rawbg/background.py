"""Background tasks, under FastAPI's module name: ``from rawbg.background import BackgroundTasks``.

A request's tasks run after its response has been flushed, owned by its
connection's task. They live in `rawbg.tasks` (`rawbg.tasks.calls`); this
module is their public face.
"""

from rawbg.tasks.calls import BackgroundTask, BackgroundTasks

__all__ = ["BackgroundTask", "BackgroundTasks"]
