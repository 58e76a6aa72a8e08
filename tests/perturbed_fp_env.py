"""Print the floating-point environment under which `make test-notebooks` runs nbval.

The stored outputs in notebooks/ come from `make notebooks` in the machine's own environment. nbval
re-executes them in a different one, so that a printed digit which depends on the processor fails
here and not on a reader's machine (CONTRIBUTING.md, section 3a):

* OpenBLAS's kernels for another processor (``OPENBLAS_CORETYPE``): every matrix product changes in
  its last bits;
* NumPy's dispatched SIMD loops switched off (``NPY_DISABLE_CPU_FEATURES``), every one this machine
  would use, so ``tanh``, ``exp`` and friends take the baseline code path.

Prints shell assignments, separated by spaces, for the Makefile to prefix to the nbval command.
"""

import os
import platform

from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

dispatched = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
if platform.machine().lower() in ("x86_64", "amd64"):
    # A kernel other than the one the notebooks were executed with.
    current = os.environ.get("OPENBLAS_CORETYPE", "").lower()
    print(f"OPENBLAS_CORETYPE={'Nehalem' if current == 'sandybridge' else 'Sandybridge'}")
print(f"NPY_DISABLE_CPU_FEATURES={','.join(dispatched)}")
