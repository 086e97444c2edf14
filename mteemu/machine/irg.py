"""IRG's random tags: one seeded generator per CPU, the same numbers in Python and in C.

Arm ARM ChooseRandomNonExcludedTag() leaves the generator to the implementation; Linux
runs on hardware whose tags are unpredictable. mteemu's are reproducible under `--seed`
(and differ between seeds). The generator is SplitMix64 (Steele, Lea and Flood, "Fast
splittable pseudorandom number generators", 2014): one 64-bit state, a few operations,
written identically here and in `_native.c` (mte_random_tag), so the native path draws
IRG's tags without calling Python and both paths draw the same tags for the same seed."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mteemu.machine.native import Native

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def initial_state(seed: int) -> int:
    """The generator's state for a run's `--seed` (kept apart from getrandom's stream)."""
    return ((seed & MASK64) * GOLDEN + 0x6D7465) & MASK64     # "mte"


def next_state(state: int) -> tuple[int, int]:
    """SplitMix64: (the new state, the 64-bit output)."""
    state = (state + GOLDEN) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def choose(allowed_mask: int, value: int) -> int:
    """The tag `value` picks among the tags not excluded (0 when all are)."""
    allowed = [t for t in range(16) if allowed_mask >> t & 1]
    return allowed[value % len(allowed)] if allowed else 0


class Irg:
    """The pure-Python generator (the native path keeps its state in C: NativeIrg)."""

    def __init__(self, seed: int = 0) -> None:
        self.state = initial_state(seed)

    def seed(self, seed: int) -> None:
        self.state = initial_state(seed)

    def random_tag(self, exclude: int) -> int:
        self.state, value = next_state(self.state)
        return choose(~exclude & 0xFFFF, value)


class NativeIrg:
    """The generator whose state is the CPU's native context: an IRG that Python executes
    (a debugger's single step, a declined instruction) draws from the same stream."""

    def __init__(self, native: "Native") -> None:
        self.native = native
        self.seed(0)

    def seed(self, seed: int) -> None:
        self.native.seed_irg(initial_state(seed))

    def random_tag(self, exclude: int) -> int:
        return self.native.random_tag(exclude)
