"""`make demo` (`tools/demo.py`): :mod:`.runner` runs the steps and prints the summary; the
steps that are more than a list of commands (:mod:`.driving`, :mod:`.remote_sensing`) each
expose ``run(work_dir: Path) -> dict`` returning their scores and output paths."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def demo_step(tag: str, seed: int, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """Seed torch, run with one intra-op thread (the steps' small tensors and spconv's CPU
    kernels were several times slower with two threads contending on a shared 2-core
    machine), restore the thread count after; yields ``say(message)``, which prints
    ``[tag] message`` unless `quiet`."""
    import torch

    def say(message: str) -> None:
        if not quiet:
            print(f"[{tag}] {message}", flush=True)

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield say
    finally:
        torch.set_num_threads(threads)
