"""One worker of the two-worker tests (run as a script):

    python multiworker_job.py INDEX PORTS ROOT OUT [EPOCHS STEPS [KEY=VALUE ...]]
"""

import json
import os
import sys


def run(index: int, ports: list[str], root: str, out: str, epochs: int = 2, steps: int = 3,
        overrides: tuple = ()) -> None:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": index}})
    import numpy as np

    from sid_keras.training.config import load_config
    from sid_keras.training.distributed import train_multi_worker

    config = load_config("synthetic", [f"data.root='{root}'", f"train.out_dir='{out}'", "model.args={width=4, depth=3}",
                                       "data.patch_size=32", "data.batch_size=4", f"train.epochs={epochs}",
                                       f"train.steps_per_epoch={steps}", "train.val_every=1", "data.decode_workers=1",
                                       *overrides])
    result = train_multi_worker(config, log=lambda line: print(line, flush=True))
    model = result["model"]
    np.savez(f"{out}/weights{index}.npz", *[np.asarray(w) for w in model.get_weights()])
    np.save(f"{out}/steps{index}.npy", np.asarray(model.optimizer.iterations.numpy()))
    np.save(f"{out}/loss{index}.npy", np.asarray(result["loss"]))


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], sys.argv[4], *map(int, sys.argv[5:7]),
        overrides=tuple(sys.argv[7:]))
