import os
import stat

from supernet.runtime.io import write_json, write_text


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_artifacts_get_the_umask_mode_not_a_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        assert _mode(tmp_path / "a.json") == 0o644
        os.umask(0o077)
        write_text(tmp_path / "b.txt", "b")
        assert _mode(tmp_path / "b.txt") == 0o600
    finally:
        os.umask(old)


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("old")
    path.chmod(0o640)
    write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o640
