"""utils.atomic_folder: every writer's build-then-rename, written once."""

import pytest

from tmc_lightning.utils import atomic_folder


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_the_folder_appears_whole_and_no_temporary_stays(tmp_path):
    dest = tmp_path / "out"
    with atomic_folder(dest) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not dest.exists()  # nothing under the final name while building
    assert (dest / "a.txt").read_text() == "a"
    assert siblings(dest) == ["out"]


def test_an_error_leaves_nothing_and_an_old_folder_untouched(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("build failed")
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    assert siblings(dest) == ["out"]


def test_replace_swaps_and_no_replace_refuses(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="already exists"), atomic_folder(dest):
        pass
    with atomic_folder(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert siblings(dest) == ["out"]


def test_a_folder_that_appears_meanwhile_wins(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(FileExistsError, match="appeared"), atomic_folder(dest) as tmp:
        (tmp / "mine.txt").write_text("mine")
        dest.mkdir()
        (dest / "theirs.txt").write_text("theirs")  # another process finished first
    assert sorted(p.name for p in dest.iterdir()) == ["theirs.txt"]
    assert siblings(dest) == ["out"]
