"""Pictures of dreams: video frames and stills from `engine.dream.Dream` arrays.

Image observations: one column per sequence, rows truth / prediction / error (open loop) or
the dream alone (free dream); a green border while the model observes, red once it predicts,
and the predicted reward / continue under each column. Vector observations: per-dimension
curves, truth solid and prediction dashed, drawn with matplotlib (Agg, no display needed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

OBSERVED, IMAGINED = (40, 180, 60), (220, 40, 40)  # border colours (RGB)
GAP = 2


def _tile(image: np.ndarray, scale: int, border: tuple[int, int, int]) -> np.ndarray:
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, -1)
    image = image[:, :, :3].repeat(scale, 0).repeat(scale, 1)
    out = _frame(image.shape, border)
    out[GAP:-GAP, GAP:-GAP] = image
    return out


def _frame(shape, colour) -> np.ndarray:
    h, w = shape[0] + 2 * GAP, shape[1] + 2 * GAP
    out = np.zeros((h, w, 3), np.uint8)
    out[:GAP], out[-GAP:], out[:, :GAP], out[:, -GAP:] = colour, colour, colour, colour
    return out


def _label(width: int, text: str) -> np.ndarray:
    import cv2

    strip = np.zeros((14, width, 3), np.uint8)
    cv2.putText(strip, text, (2, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1,
                cv2.LINE_AA)
    return strip


def image_frames(dream, key: str, scale: int = 1) -> np.ndarray:
    """(T, H, W, 3) uint8 video frames for one image key."""
    truth, pred = dream.truth.get(key), dream.pred[key]
    n, length = pred.shape[:2]
    open_loop = truth is not None and truth.shape[1] == length
    frames = []
    for t in range(length):
        border = OBSERVED if t < dream.context else IMAGINED
        columns = []
        for i in range(n):
            rows = []
            if open_loop:
                err = np.abs(truth[i, t].astype(np.int16) - pred[i, t].astype(np.int16))
                rows += [_tile(truth[i, t], scale, OBSERVED), _tile(pred[i, t], scale, border),
                         _tile(np.clip(err * 2, 0, 255).astype(np.uint8), scale, border)]
            else:
                rows.append(_tile(pred[i, t], scale, border))
            width = rows[0].shape[1]
            heads = f"r {dream.reward_pred[i, t]:.2f} c {dream.cont_pred[i, t]:.2f}"
            rows.append(_label(width, heads))
            columns.append(np.concatenate(rows, 0))
        frames.append(np.concatenate(columns, 1))
    return np.stack(frames)


class CurveFigure:
    """Per-dimension truth vs prediction curves of vector observations, plus reward."""

    def __init__(self, dream, max_dims: int = 8):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.dream = dream
        self.series = []  # (title, truth (N, T) or None, pred (N, T))
        for key in dream.vector_keys:
            pred = dream.pred[key]
            truth = dream.truth.get(key)
            for d in range(min(pred.shape[-1], max_dims - len(self.series))):
                self.series.append((f"{key}[{d}]", None if truth is None else truth[..., d],
                                    pred[..., d]))
        self.series.append(("reward", dream.reward_truth, dream.reward_pred))
        if dream.value_pred is not None:
            self.series.append(("value", None, dream.value_pred))
        self.series.append(("continue", None, dream.cont_pred))
        cols = 2 if len(self.series) > 4 else 1
        rows = -(-len(self.series) // cols)
        self.fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 1.5 * rows + 0.7),
                                      squeeze=False, dpi=80)
        self.lines = []
        length, n = dream.length, dream.reward_pred.shape[0]
        # one hue per sequence, truth in its dark shade (solid) and the model's prediction in
        # its light shade (dashed): a pair reads as one, and sequences stay apart
        pairs = plt.get_cmap("tab20").colors
        for k, (ax, (title, truth, pred)) in enumerate(zip(axes.flat, self.series)):
            ax.set_title(title, fontsize=8, loc="left")
            ax.set_ylabel(title.split("[")[0], fontsize=6)
            if k >= len(self.series) - cols:  # the bottom plot of each column
                ax.set_xlabel("step", fontsize=6)
            ax.tick_params(labelsize=6)
            ax.axvline(dream.context - 0.5, color="grey", lw=0.8, ls=":")
            values = [pred] + ([truth] if truth is not None else [])
            lo = min(float(np.nanmin(v)) for v in values)  # NaN: steps with no prediction
            hi = max(float(np.nanmax(v)) for v in values)
            pad = 0.05 * (hi - lo) + 1e-6
            ax.set_xlim(0, length - 1)
            ax.set_ylim(lo - pad, hi + pad)
            for i in range(n):
                dark, light = pairs[(2 * i) % 20], pairs[(2 * i + 1) % 20]
                if truth is not None:
                    self.lines.append((ax.plot([], [], color=dark, lw=1.2,
                                               label=f"seq {i} truth")[0], truth[i]))
                self.lines.append((ax.plot([], [], color=dark if truth is None else light,
                                           lw=1.2, ls="--", label=f"seq {i} model")[0], pred[i]))
        for ax in axes.flat[len(self.series):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        self.fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)),
                        fontsize=6, frameon=False)
        self.fig.suptitle("solid dark: truth, dashed light: model (one colour per sequence); "
                          "dotted line: the model stops observing", fontsize=8)
        self.fig.tight_layout(rect=(0, 0.1, 1, 1))

    def draw(self, upto: int) -> np.ndarray:
        for line, values in self.lines:
            n = min(upto, len(values))
            line.set_data(np.arange(n), values[:n])
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()

    def frames(self) -> np.ndarray:
        return np.stack([self.draw(t + 1) for t in range(self.dream.length)])

    def save(self, path: str | Path) -> Path:
        self.draw(self.dream.length)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(path)
        return path

    def close(self) -> None:
        import matplotlib.pyplot as plt

        plt.close(self.fig)


def dream_frames(dream, scale: int = 2) -> np.ndarray:
    """The video of a dream: image keys as tiles, else vector curves."""
    if dream.image_keys:
        return image_frames(dream, dream.image_keys[0], scale)
    figure = CurveFigure(dream)
    try:
        return figure.frames()
    finally:
        figure.close()


def dream_still(dream, path: str | Path, scale: int = 2) -> Path:
    """One picture: vector curves over the whole window, or the image tiles of all steps."""
    if dream.vector_keys or not dream.image_keys:
        figure = CurveFigure(dream)
        try:
            return figure.save(path)
        finally:
            figure.close()
    import imageio.v2 as imageio

    frames = image_frames(dream, dream.image_keys[0], scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.concatenate(list(frames[::max(1, len(frames) // 8)]), 1))
    return path
