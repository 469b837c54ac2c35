"""jdps.outputs: atomic writes with provenance, one writer per output; and the size checks of jdps.validate."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jdps import outputs
from jdps.errors import InputError
from jdps.validate import budget_from


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = outputs.write_npz(tmp_path / "r", weights=np.ones(3))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="killed mid-write"):
        _failing_write(tmp_path / "r.npz")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.npz"]


def _failing_write(path):
    with outputs.atomic(path) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("killed mid-write")


def test_every_kind_of_output_records_its_provenance(tmp_path):
    prov = outputs.provenance(command="jdps x --seed 3", options={"seed": 3}, seed=3,
                              inputs=outputs.inputs_fingerprint([__file__, tmp_path]))
    assert prov["jdps"] and list(prov["inputs"].values())[1].startswith("folder:")
    with np.load(outputs.write_npz(tmp_path / "a", prov, w=np.ones(2))) as f:
        assert json.loads(str(f["provenance"])) == json.loads(json.dumps(prov))
    npy = outputs.write_npy(tmp_path / "b", np.ones(2), prov)
    assert json.loads((tmp_path / "b.npy.json").read_text())["provenance"]["seed"] == 3 and npy.name == "b.npy"
    assert json.loads(outputs.write_json(tmp_path / "c.json", {"x": 1}, prov).read_text())["provenance"]["seed"] == 3
    md = outputs.write_text(tmp_path / "d.md", "# t\n", prov).read_text()
    assert md.splitlines()[-1].startswith("Provenance: `{") and '"seed": 3' in md


def test_a_second_locker_is_refused_and_a_dead_lockers_file_is_no_lock(tmp_path):
    out = tmp_path / "w.npz"
    with outputs.OutputLock([out]):
        assert (tmp_path / "w.npz.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match=rf"another jdps run \(pid {os.getpid()}\) is writing the output"):
            outputs.OutputLock([out]).acquire()
    assert not (tmp_path / "w.npz.lock").exists()
    # a process killed while holding it leaves the file, not the lock (the kernel drops a dead process's flock)
    code = (f"import os, signal; from jdps.outputs import OutputLock; OutputLock([{str(out)!r}]).acquire(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code], check=False)
    assert (tmp_path / "w.npz.lock").exists()
    with outputs.OutputLock([out]):
        pass


@pytest.mark.parametrize("n, kwargs", [(0, {"fraction": 0.5}), (0, {"budget": 1}), (-3, {"fraction": 1.0}),
                                       (5, {"budget": 2.5}), (5, {"budget": float("nan")}), (5, {"budget": True}),
                                       (5, {"fraction": "0.5"}), (2.5, {"budget": 1})])
def test_budget_from_refuses_what_it_cannot_serve(n, kwargs):
    with pytest.raises(InputError):
        budget_from(n, **kwargs)
