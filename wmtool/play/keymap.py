"""Keys for an action space: what the page shows and how held keys become an action.

Discrete actions: the env's own action meanings where it has them (ALE's "UP", "LEFTFIRE",
...), so arrows and space combine as on a joystick; otherwise the digit keys 1..n, with
the arrows on the first actions. Continuous actions: a key pair per dimension (arrows,
then A/D, S/W, J/L, K/I, ...), each dimension moving smoothly towards the held direction
and back to 0 when released, as a stick would; a gamepad's axes set the dimensions directly.
Latent actions (Genie) are discrete actions without meanings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wmtool.spaces import Space

PAIRS = [("ArrowLeft", "ArrowRight"), ("ArrowDown", "ArrowUp"), ("a", "d"), ("s", "w"),
         ("j", "l"), ("k", "i"), ("f", "h"), ("g", "t"), ("z", "x"), ("c", "v")]
# ALE's meanings are made of these words; a meaning is chosen when its words are held.
WORD_KEYS = {"UP": "ArrowUp", "DOWN": "ArrowDown", "LEFT": "ArrowLeft", "RIGHT": "ArrowRight",
             "FIRE": " "}
SMOOTHING = 0.35  # share of the way to the target a continuous dimension moves per tick


@dataclass
class KeyMap:
    """Held keys (and gamepad axes) -> an action for one action space."""
    act_space: Space
    meanings: list[str] | None = None
    value: np.ndarray = field(init=False)

    def __post_init__(self):
        self.value = np.zeros(self.act_space.shape, np.float32)
        if not self.act_space.discrete and self.act_space.shape and \
                self.act_space.shape[0] > len(PAIRS):
            self.pairs = PAIRS + [(f"{i}-", f"{i}+") for i in range(len(PAIRS),
                                                                     self.act_space.shape[0])]
        else:
            self.pairs = PAIRS

    @property
    def neutral(self) -> int:
        """The discrete action taken with no key held (NOOP where the env has one)."""
        if self.meanings and "NOOP" in self.meanings:
            return self.meanings.index("NOOP")
        return 0

    def describe(self) -> list[dict]:
        """The key map the page shows: one entry per key (or key pair)."""
        if self.act_space.discrete:
            if self.meanings and all(set(_words(m)) <= set(WORD_KEYS) | {"NOOP"}
                                     for m in self.meanings):
                return [{"keys": [WORD_KEYS[w] for w in _words(m)] or ["(none)"],
                         "action": i, "label": m} for i, m in enumerate(self.meanings)]
            labels = self.meanings or [f"action {i}" for i in range(self.act_space.n)]
            return [{"keys": [str(i + 1)] + _arrow(i, self.act_space.n), "action": i,
                     "label": labels[i]} for i in range(self.act_space.n)]
        return [{"keys": list(self.pairs[d]), "action": d, "label": f"dimension {d}: - / +"}
                for d in range(int(np.prod(self.act_space.shape)))]

    def action(self, held: set[str], axes: list[float] | None = None) -> np.ndarray:
        """The action for this tick from the keys held now (and a gamepad's axes)."""
        if self.act_space.discrete:
            return np.asarray(self._discrete(held), np.int64)
        target = np.zeros_like(self.value)
        flat = target.reshape(-1)
        for d in range(flat.size):
            minus, plus = self.pairs[d]
            flat[d] = float(plus in held) - float(minus in held)
        if axes:
            n = min(len(axes), flat.size)
            flat[:n] = np.where(flat[:n] == 0, np.clip(axes[:n], -1, 1), flat[:n])
        self.value += SMOOTHING * (target - self.value)
        low = -1.0 if self.act_space.low is None else self.act_space.low
        high = 1.0 if self.act_space.high is None else self.act_space.high
        # the page's [-1, 1] stick onto the space's own bounds
        return (low + (self.value + 1) * (high - low) / 2).astype(self.act_space.dtype)

    def _discrete(self, held: set[str]) -> int:
        for entry in self.describe():
            if entry["keys"][0].isdigit() and entry["keys"][0] in held:
                return entry["action"]
        # the meaning whose keys are all held, the most keys first (UPLEFTFIRE over UP)
        best, size = self.neutral, 0
        for entry in self.describe():
            keys = [k for k in entry["keys"] if k != "(none)" and not k.isdigit()]
            if keys and all(k in held for k in keys) and len(keys) > size:
                best, size = entry["action"], len(keys)
        return best

    def reset(self) -> None:
        self.value = np.zeros_like(self.value)


def _words(meaning: str) -> list[str]:
    """"UPLEFTFIRE" -> ["UP", "LEFT", "FIRE"]; "NOOP" -> []."""
    words, rest = [], meaning
    while rest and rest != "NOOP":
        word = next((w for w in WORD_KEYS if rest.startswith(w)), None)
        if word is None:
            return [meaning]
        words.append(word)
        rest = rest[len(word):]
    return words


def _arrow(i: int, n: int) -> list[str]:
    """Arrows on the first actions of a small discrete space (CartPole: left, right)."""
    arrows = ["ArrowLeft", "ArrowRight"] if n == 2 else ["ArrowLeft", "ArrowRight",
                                                          "ArrowUp", "ArrowDown"]
    return [arrows[i]] if i < len(arrows) else []
