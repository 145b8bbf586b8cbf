"""Scores for models that learn from frames alone (Genie): PSNR, and how well discrete
latent actions tell true actions apart (normalised mutual information, best-mapping
accuracy), each with the level chance would reach."""
from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, truth: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per leading item; identical images give inf."""
    err = ((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2)
    mse = err.reshape(len(err), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(peak ** 2 / mse)


def _joint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    return table / table.sum()


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) / mean(H(a), H(b)) (0: independent, 1: one determines the other)."""
    joint = _joint(np.asarray(a), np.asarray(b))
    ha, hb = _entropy(joint.sum(1)), _entropy(joint.sum(0))
    mutual = ha + hb - _entropy(joint.flatten())
    return 0.0 if ha + hb == 0 else float(2 * mutual / (ha + hb))


def best_mapping_accuracy(latent: np.ndarray, true: np.ndarray) -> float:
    """Accuracy of predicting the true action from the latent one through the best map
    (each latent action -> its most frequent true action); names do not matter."""
    joint = _joint(np.asarray(latent), np.asarray(true))
    return float(joint.max(1).sum())


def chance_levels(latent: np.ndarray, true: np.ndarray, rng: np.random.Generator,
                  shuffles: int = 20) -> dict[str, float]:
    """The scores of latent actions that carry no information: the same latent actions
    paired with shuffled true actions (mean over `shuffles`), and always guessing the most
    common true action."""
    scores = [(nmi(latent, s), best_mapping_accuracy(latent, s))
              for s in (rng.permutation(true) for _ in range(shuffles))]
    _, counts = np.unique(true, return_counts=True)
    return {"nmi": float(np.mean([s[0] for s in scores])),
            "accuracy": float(np.mean([s[1] for s in scores])),
            "majority": float(counts.max() / counts.sum())}
