"""Progress for long runs: items, passages/s, tokens/s and an ETA (tqdm, on stderr)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool = True, desc: str = "generate", unit: str = "item"):
        self.total = total
        self.done = self.failed = self.tokens = 0
        self.started = time.perf_counter()
        self.bar = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.1, mininterval=0.5)

    def rates(self) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return self.done / elapsed, self.tokens / elapsed

    def update(self, done: int, failed: int, tokens: int) -> None:
        self.done += done
        self.failed += failed
        self.tokens += tokens
        if self.bar is not None:
            per_s, tok_s = self.rates()
            self.bar.set_postfix_str(f"{per_s:.2f} passages/s, {tok_s:.1f} tok/s, {self.failed} failed", refresh=False)
            self.bar.update(done + failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
