"""The golden model: configuration, network, data, the engines and their checks (see ../README.md)."""

import os

# The engines' parallel kernels run OpenMP teams (Numba's threading layer; NEST too) whose threads spin at each
# barrier before they sleep. On a machine where another job holds a core, each of a training run's hundreds of
# parallel regions per sample then waits for a scheduler time slice: measured, 2,372-2,418 ms per nmnist sample
# instead of 4-7 ms. A short spin (GOMP_SPINCOUNT=1000) took that run to 25.3 ms and costs 5-10 % on the idle
# machine (README "Performance"). libgomp reads it when it is loaded, i.e. at the first parallel kernel or
# `import nest`, after this; a value the user set is kept.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
