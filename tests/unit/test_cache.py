"""The decoded cache survives broken entries and concurrent builders."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers.layouts import make_lvit
from tmc_lightning.data.cache import cache_key, cached_arrays
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.layouts import read_lvit


def _decode(samples):
    dm = build_datamodule("qata", root=str(samples[0].image.parents[2]), image_size=16)
    return dm._decode(samples)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[:100]),  # cut short by a killed process
        lambda p: p.write_bytes(b"not numpy at all"),  # unreadable
        lambda p: np.save(p, np.zeros((1, 4, 4), np.uint8)),  # an old or foreign entry
    ],
)
def test_a_broken_entry_is_rebuilt_with_a_warning(tmp_path, damage):
    samples = read_lvit(make_lvit(tmp_path / "q"), "train")
    cache = tmp_path / "cache"
    first = [np.array(a) for a in cached_arrays(samples, 16, cache, _decode)]
    entry = cache / f"{cache_key(samples, 16)}_images.npy"
    damage(entry)
    with pytest.warns(UserWarning, match="rebuilding it"):
        again = cached_arrays(samples, 16, cache, _decode)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    reread = cached_arrays(samples, 16, cache, lambda s: pytest.fail("decoded again"))
    np.testing.assert_array_equal(reread[0], first[0])  # the rebuilt entry is read next time


def test_two_processes_building_one_entry_leave_one_valid_entry(tmp_path):
    root = make_lvit(tmp_path / "q", n=6)
    samples = read_lvit(root, "train")
    alone = cached_arrays(samples, 16, tmp_path / "alone", _decode)
    script = textwrap.dedent(
        f"""
        import time
        from tmc_lightning.data.cache import cached_arrays
        from tmc_lightning.data.datamodule import build_datamodule
        from tmc_lightning.data.layouts import read_lvit
        samples = read_lvit({str(root)!r}, "train")
        dm = build_datamodule("qata", root={str(root)!r}, image_size=16)
        def slow(s):
            time.sleep(1.0)  # both processes are decoding at the same time
            return dm._decode(s)
        cached_arrays(samples, 16, __import__("pathlib").Path({str(tmp_path / "shared")!r}), slow)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    shared = tmp_path / "shared"
    assert not list(shared.glob(".*.tmp"))  # no temporary file left
    assert len(list(shared.glob("*.npy"))) == 2
    built = cached_arrays(samples, 16, shared, lambda s: pytest.fail("entry not valid"))
    for a, b in zip(alone, built, strict=True):
        np.testing.assert_array_equal(a, b)
