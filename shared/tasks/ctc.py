"""Greedy (best-path) CTC decoding of one sequence of class scores, with confidences.

Scores are ``[T, C]`` (time steps x classes), class 0 the CTC blank and class ``i >= 1`` the
``i-1``-th entry of the character list. The scores may be logits or log-probabilities (a
softmax of either gives the probabilities); rows that already are probability distributions
are recognised and used as they are.

Cost: one argmax over ``[T, C]`` (a read of the array, no copy), then a softmax only over the
rows where a character is emitted — typically a few dozen of the 186 rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

BLANK = 0
DEFAULT_TOP_K = 20  # Open Model Zoo's handwriting demo looks this far for a designated character


@dataclass(frozen=True)
class Decoded:
    """One decoded sequence: its characters with per-character confidence and time step."""

    text: str
    chars: Tuple[str, ...]
    confidences: Tuple[float, ...]
    steps: Tuple[int, ...]  # first time step of each character
    replaced: int  # characters swapped for an allowed one (designated-characters mode)

    @property
    def confidence(self) -> float:
        """Geometric mean of the character confidences (length-normalised path probability);
        0.0 for empty text."""
        if not self.confidences:
            return 0.0
        return float(np.exp(np.mean(np.log(np.maximum(self.confidences, 1e-12)))))


def _probabilities(rows: np.ndarray) -> np.ndarray:
    """Softmax of score rows (float64), unless the rows already are probability distributions."""
    rows = rows.astype(np.float64)
    if rows.size and rows.min() >= 0.0 and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
        return rows
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def greedy_decode(scores: np.ndarray, charlist: Sequence[str],
                  allowed: Optional[np.ndarray] = None, top_k: int = DEFAULT_TOP_K) -> Decoded:
    """Best-path decode ``scores`` [T, C] with ``charlist`` (C - 1 entries).

    Emission: argmax per step; a step emits when its class is not the blank and differs from
    the previous step's class (so a blank between two equal classes gives two characters).

    ``allowed`` (bool [C], blank False) is the designated-characters mode of Open Model Zoo's
    demo: an emitted character that is not allowed is replaced by the best-scoring allowed
    class among that step's ``top_k`` classes, and kept as it is when none of them is allowed.

    A character's confidence is the highest probability its class gets over the run of steps
    that emit it (the probability of the replacement class at the emitting step when replaced).
    """
    if scores.ndim != 2:
        raise ValueError(f"expected [T, C] scores, got shape {scores.shape}")
    t_steps, n_classes = scores.shape
    if n_classes != len(charlist) + 1:
        raise ValueError(f"{n_classes} classes but {len(charlist)} characters (+1 blank)")
    if t_steps == 0:
        return Decoded("", (), (), (), 0)
    best = scores.argmax(axis=1)
    # argmax stops at the first NaN and picks an infinity: the winners tell, at no extra pass
    if not np.isfinite(scores[np.arange(t_steps), best]).all():
        raise ValueError("the scores contain NaN or infinite values")
    prev = np.empty_like(best)
    prev[0] = BLANK
    prev[1:] = best[:-1]
    emit = np.flatnonzero((best != BLANK) & (best != prev))
    if emit.size == 0:
        return Decoded("", (), (), (), 0)
    classes = best[emit].copy()

    # runs: the steps t in [emit[i], run_end[i]) carry the same class as emit[i]
    changes = np.append(np.flatnonzero(best[1:] != best[:-1]) + 1, t_steps)
    run_end = changes[np.searchsorted(changes, emit, side="right")]

    replaced = 0
    if allowed is not None:
        bad = ~allowed[classes]
        if bad.any():
            rows = np.asarray(scores[emit[bad]], dtype=np.float64)
            k = int(min(max(top_k, 1), n_classes))
            top = np.argpartition(-rows, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(rows, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)  # best first
            ok = allowed[top]
            has = ok.any(axis=1)
            pick = top[np.arange(top.shape[0]), ok.argmax(axis=1)]
            new = np.where(has, pick, classes[bad])
            replaced = int((new != classes[bad]).sum())
            classes[bad] = new

    # confidences: softmax only on the emitting runs' rows
    lengths = run_end - emit
    conf = np.empty(emit.size, np.float64)
    same = classes == best[emit]
    if same.any():
        idx = np.flatnonzero(same)
        owner = np.repeat(np.arange(idx.size), lengths[idx])
        starts = np.cumsum(lengths[idx]) - lengths[idx]
        steps = emit[idx][owner] + (np.arange(owner.size) - starts[owner])
        probs = _probabilities(np.asarray(scores[steps]))
        p = probs[np.arange(steps.size), classes[idx][owner]]
        best_p = np.full(idx.size, -1.0)
        np.maximum.at(best_p, owner, p)
        conf[idx] = best_p
    if (~same).any():
        idx = np.flatnonzero(~same)
        probs = _probabilities(np.asarray(scores[emit[idx]]))
        conf[idx] = probs[np.arange(idx.size), classes[idx]]

    chars = tuple(charlist[c - 1] for c in classes.tolist())
    return Decoded("".join(chars), chars, tuple(float(c) for c in conf), tuple(int(s) for s in emit),
                   replaced)


def allowed_mask(charlist: Sequence[str], allowed: str) -> Tuple[np.ndarray, List[str]]:
    """bool [len(charlist) + 1] of the classes whose character is in ``allowed`` (compared as
    written and after NFKC, so ``"A1"`` also allows the list's full-width ``"Ａ"``), and the
    allowed characters that are not in the list at all."""
    import unicodedata

    wanted = set(allowed) | set(unicodedata.normalize("NFKC", allowed))
    mask = np.zeros(len(charlist) + 1, dtype=bool)
    found = set()
    for i, ch in enumerate(charlist, start=1):
        if ch in wanted:
            mask[i] = True
            found.add(ch)
        else:
            norm = unicodedata.normalize("NFKC", ch)
            if norm in wanted:
                mask[i] = True
                found.add(norm)
    found_norm = found | {unicodedata.normalize("NFKC", c) for c in found}
    missing = [c for c in dict.fromkeys(allowed)
               if c not in found_norm and unicodedata.normalize("NFKC", c) not in found_norm
               and not c.isspace()]
    return mask, missing
