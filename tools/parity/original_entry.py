"""Run the original code's ``miniImageNet100.main()`` with one machine-readable line per epoch.

    ORIGINAL_PYTHON original_entry.py CHECKOUT [miniImageNet100.py options ...]

Executed by the interpreter of the original's environment (it needs only what the original
needs), in the folder where the original is to write ./models, ./masks, ./logs and read ./data.
It changes nothing the original computes: it wraps the ``train`` function that miniImageNet100
imported from core, printing after every epoch

    PARITY epoch task=T epoch=E loss=<summed batch losses / batches> acc=<train acc %> batches=N

and lets numpy print the accuracy matrix in full. Standalone: it imports nothing from cldst.
"""

from __future__ import annotations

import inspect
import os
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: original_entry.py CHECKOUT [miniImageNet100.py options ...]")
    checkout = os.path.abspath(sys.argv[1])
    if not os.path.isfile(os.path.join(checkout, "miniImageNet100.py")):
        sys.exit(f"original_entry.py: {checkout} has no miniImageNet100.py: not a CL-with-DST checkout")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # no shadowing by our modules
    sys.path.insert(0, checkout)

    import miniImageNet100 as original  # the checkout's module
    import numpy as np

    np.set_printoptions(threshold=sys.maxsize)  # never "..." in the printed accuracy matrix
    train = original.train
    signature = inspect.signature(train)

    def train_and_report(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        loss_sum, acc = train(*args, **kwargs)
        batches = len(bound.arguments["train_loader"])
        print(f"PARITY epoch task={bound.arguments['task_id']} epoch={bound.arguments['epoch']} "
              f"loss={loss_sum / batches!r} acc={float(acc)!r} batches={batches}", flush=True)
        return loss_sum, acc

    original.train = train_and_report
    torch = sys.modules.get("torch")  # imported by the original
    if torch is not None:
        print(f"PARITY start torch={torch.__version__} cuda={torch.cuda.is_available()} checkout={checkout}",
              flush=True)
    sys.argv = [os.path.join(checkout, "miniImageNet100.py"), *sys.argv[2:]]
    original.main()
    print("PARITY done", flush=True)


if __name__ == "__main__":
    main()
