"""The warm-up that gunicorn's master (and `atlas-viewer serve`) runs before serving compiles every numba kernel of
the picture path, so no user's first picture waits for a compilation."""
from __future__ import annotations

import numba.core.registry

from server.features import warm_up_compiled_code


def _kernels(module):
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, numba.core.registry.CPUDispatcher)}


def test_warm_up_compiles_every_kernel_of_the_picture_path():
    import rendering.blend
    import rendering.png
    import rendering.raster

    warm_up_compiled_code()
    kernels = {f"{m.__name__}.{name}": k for m in (rendering.raster, rendering.png, rendering.blend)
               for name, k in _kernels(m).items()}
    assert kernels
    cold = sorted(name for name, kernel in kernels.items() if not kernel.signatures)
    assert cold == []
