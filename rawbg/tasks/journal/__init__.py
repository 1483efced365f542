"""The task journal: durable tasks committed before their response, run again after a crash.

* `store`: the `TaskStore` protocol every store implements, its entries and errors.
* `sqlite`: `SQLiteTaskStore`, one SQLite file in WAL mode.
* `writer`: `JournalWriter`, the writer thread: group commit, batched
  done-marks, leases and takeover.
"""
