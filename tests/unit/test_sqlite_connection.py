"""Opening one new SQLite file from many processes at once (a server's stubs open the key store,
audit trail and catalog together as the models load): every one ends in WAL mode, none fails
with "database is locked" - which SQLite answers at once, without its busy wait, to a journal
mode switch while other connections hold the file (12 processes released together hit it in
about 1 of 10 new files before connect() retried the switch)."""
from __future__ import annotations

import multiprocessing

from productsearch.catalog.sqlite.connection import connect


def open_and_write(path: str, start, answers) -> None:
    start.wait()
    try:
        db = connect(path)
        db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        answers.put(db.execute("PRAGMA journal_mode").fetchone()[0])
        db.close()
    except Exception as err:  # noqa: BLE001 - reported to the test
        answers.put(repr(err))


def test_many_processes_open_a_new_file_at_once(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(20):
        path = str(tmp_path / f"keys-{trial}.sqlite")
        start, answers = context.Event(), context.Queue()
        processes = [context.Process(target=open_and_write, args=(path, start, answers)) for _ in range(12)]
        for process in processes:
            process.start()
        start.set()
        for process in processes:
            process.join(60)
        assert [answers.get(timeout=10) for _ in processes] == ["wal"] * 12, trial
