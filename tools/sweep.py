#!/usr/bin/env python
"""
Run a matrix of tools/train_net.py runs (configs x datasets x seeds x a grid or random search
over config keys), each in `<root>/<config>/<dataset>/seed<k>/<KEY=value,...>`:

    python tools/sweep.py run configs/sweeps/phantom_demo.yaml                  # one after another
    python tools/sweep.py run MATRIX --gpus 0,1,2,3                             # one run per GPU
    python tools/sweep.py run MATRIX --executor submitit-local                  # submitit, locally
    python tools/sweep.py run MATRIX --executor slurm --partition gpu --nodes 2 --gpus-per-node 8 \
        --timeout-min 1440                                                      # a SLURM job array
    python tools/sweep.py run MATRIX --dry-run                                  # list, run nothing
    python tools/sweep.py status MATRIX                                         # every run's state
    python tools/sweep.py select MATRIX     # pick each config's point on val, score it on test once

Runs train on <dataset>_train and are scored on <dataset>_val. Finished runs are skipped;
killed or preempted ones resume from their last good checkpoint. Matrix format: the
docstring of cxr_d2/sweep/matrix.py and README.md ("Sweeps").
"""

from cxr_d2.sweep.cli import main

if __name__ == "__main__":
    main(doc=__doc__)
