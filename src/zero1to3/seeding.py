"""Seeds derived from seeds: the same in every process and on every device (unlike ``hash`` of strings)."""

from __future__ import annotations

import numpy as np


def mix_seed(*values: int) -> int:
    """A 32-bit seed that depends on all values (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([int(v) % (2**63) for v in values]).generate_state(1)[0])


def view_seed(seed: int, view: int) -> int:
    """Seed of the noise of the ``view``-th image a request generates (pose-major: pose p, sample s is
    ``p * num_samples + s``), so each image's noise depends on its position, never on how views are batched.

    View 0 uses ``seed`` itself: a one-view call seeded ``s`` draws what the authors' code draws after
    ``torch.manual_seed(s)`` (the peer kit checks this).
    """
    return int(seed) if view == 0 else mix_seed(seed, view)
