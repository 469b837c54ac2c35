"""BADS on 8 simulated CPU devices (weights, their running means and batches sharded over `data`)
gives the state of a 1-device run: integers identical, floats within rtol 1e-5.

XLA_FLAGS must be set before jax is imported, so each run is its own small subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = '''
import sys, numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jdps import bads
def main(out, sharded):
    rng = np.random.default_rng(0)
    n, m, d, c = 64, 12, 4, 3
    data = {"x": rng.normal(size=(n, d)).astype(np.float32), "y": rng.integers(0, c, n).astype(np.int32)}
    meta = {"x": rng.normal(size=(m, d)).astype(np.float32), "y": rng.integers(0, c, m).astype(np.int32)}

    def loss_fn(p, batch):
        h = jnp.tanh(batch["x"] @ p["w1"] + p["b1"])
        logits = h @ p["w2"] + p["b2"]
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]

    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"w1": jax.random.normal(k1, (d, 8)), "b1": jnp.zeros(8),
              "w2": jax.random.normal(k2, (8, c)) / 3, "b2": jnp.zeros(c)}
    configs = {"lazy": bads.preset("faithful", burn_in=2, theta_thin=3),
               "exact": bads.preset("faithful", burn_in=2, offbatch="exact", weight_param="logit",
                                        weight_prior="mean_penalty", log_z="contrastive")}
    results = {}
    for name, cfg in configs.items():
        sampler = bads.as_top_level_api(loss_fn, None, n, m, cfg)
        state = sampler.init(jax.random.key(1), params)
        arrays, meta_arrays, batch_sharding = ({k: jnp.asarray(v) for k, v in data.items()},
                                               {k: jnp.asarray(v) for k, v in meta.items()}, None)
        if sharded:
            mesh = Mesh(np.array(jax.devices()), ("data",))
            rows = NamedSharding(mesh, P("data"))
            state = jax.device_put(state, bads.state_shardings(state, mesh))
            arrays = jax.device_put(arrays, rows)
            meta_arrays = jax.device_put(meta_arrays, NamedSharding(mesh, P()))
            batch_sharding = rows
        state, info = bads.run_epochs(sampler.step, jax.random.key(2), state, arrays, meta_arrays, 2, 16, 4,
                                      batch_sharding=batch_sharding)
        results[f"{name}/sharded"] = np.array([getattr(s.sharding, "spec", None) == P("data") for s in
                                               (state.chain, state.weight_mean, state.weight_count)])
        for field in ("chain", "weight_mean", "weight_count", "last_visit", "step"):
            value = getattr(state, field)
            if value is not None:
                results[f"{name}/{field}"] = np.asarray(value)
        for k, v in state.params.items():
            results[f"{name}/params/{k}"] = np.asarray(v)
        results[f"{name}/loss"] = info.loss
    results["devices"] = np.array(jax.device_count())
    np.savez(out, **results)

main(sys.argv[1], sys.argv[2] == "1")
'''


def _run(tmp_path, devices):
    script, out = tmp_path / "run.py", tmp_path / f"state_{devices}.npz"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    subprocess.run([sys.executable, str(script), str(out), "1" if devices > 1 else "0"], env=env, check=True,
                   timeout=300)
    return np.load(out)


def test_eight_devices_match_one(tmp_path):
    one, eight = _run(tmp_path, 1), _run(tmp_path, 8)
    assert int(one["devices"]) == 1 and int(eight["devices"]) == 8
    for mode in ("lazy", "exact"):
        assert eight[f"{mode}/sharded"].all()  # weights and running means stayed sharded over `data`
    keys = [k for k in one.files if one[k].dtype.kind in "fiu" and k != "devices"]
    assert {"lazy/chain", "lazy/last_visit", "exact/chain", "exact/params/w1"} <= set(keys)
    for k in keys:
        if one[k].dtype.kind == "f":
            np.testing.assert_allclose(eight[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(eight[k], one[k], err_msg=k)
    assert one["lazy/weight_count"].max() >= 1  # samples were recorded
