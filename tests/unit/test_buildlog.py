from __future__ import annotations

from pathlib import Path

from drophost.pipeline.buildlog import BuildLog, is_written, log_path, logged_ids, read_log, remove_log


def test_a_log_stops_at_its_cap_says_so_and_still_keeps_the_last_lines(tmp_path: Path) -> None:
    log = BuildLog(tmp_path, 7, max_bytes=200)
    for n in range(100):
        log.line(f"line {n}")
    log.close()
    text = read_log(tmp_path, 7).decode()
    assert len(text) <= 200 + 80  # the cap, plus the one line that says where it was cut
    assert text.splitlines()[0].endswith(" line 0")
    assert text.splitlines()[-1].endswith("[the log is cut here: it reached 200 bytes]")
    assert "line 99" in log.tail_text() and "line 99" not in text


def test_logged_ids_lists_the_logs_on_disk_and_remove_log_removes_one(tmp_path: Path) -> None:
    assert logged_ids(tmp_path) == []
    for deployment_id in (12, 3):
        BuildLog(tmp_path, deployment_id, max_bytes=1000).close()
    (tmp_path / "logs" / "notes.txt").write_text("not a log")
    assert logged_ids(tmp_path) == [3, 12]
    remove_log(tmp_path, 12)
    remove_log(tmp_path, 12)  # gone already: nothing to do
    assert logged_ids(tmp_path) == [3] and not log_path(tmp_path, 12).exists()


def test_a_log_is_written_while_a_build_log_has_it_open_and_not_after(tmp_path: Path) -> None:
    assert not is_written(tmp_path, 5)  # no log at all
    log = BuildLog(tmp_path, 5, max_bytes=1000)
    log.line("building")
    assert is_written(tmp_path, 5)
    assert is_written(tmp_path, 5)  # asking does not take the writer's lock away
    log.close()
    assert not is_written(tmp_path, 5)
