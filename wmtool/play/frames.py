"""Pictures for the play page: an observation as an RGB image (vectors drawn as bars), the
drift between the dream and the real env, and PNG bytes for the WebSocket."""
from __future__ import annotations

import io

import numpy as np

BAR_HEIGHT, BARS_WIDTH = 64, 96  # a vector's picture: 64 rows, its bars over >= 96 columns
BAR_COLOURS = np.array([[66, 133, 244], [219, 68, 55]], np.uint8)  # positive, negative


def picture(obs: dict[str, np.ndarray], image_keys: list[str], vector_keys: list[str],
            scale: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8: the first image key as it is, else the vectors as bars around a
    middle line (`scale`: per key, the magnitude that fills half the height)."""
    if image_keys:
        frame = np.asarray(obs[image_keys[0]])
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        return np.repeat(frame, 3, -1) if frame.shape[-1] == 1 else frame[..., :3]
    values = np.concatenate([np.asarray(obs[k], np.float32).reshape(-1) /
                             scale[k].reshape(-1) for k in vector_keys])
    return bars(values)


def bars(values: np.ndarray) -> np.ndarray:
    """Values in about [-1, 1] as vertical bars from a middle line, one per value."""
    half, width = BAR_HEIGHT // 2, max(4, BARS_WIDTH // max(1, len(values)))
    out = np.full((BAR_HEIGHT, max(1, len(values)) * width, 3), 245, np.uint8)
    out[half, :] = 160
    for i, v in enumerate(np.nan_to_num(np.clip(values, -1, 1))):
        rows = int(round(abs(v) * (half - 1)))
        x = slice(i * width + 1, (i + 1) * width - 1)
        span = slice(half - rows, half) if v >= 0 else slice(half + 1, half + 1 + rows)
        out[span, x] = BAR_COLOURS[int(v < 0)]
    return out


def vector_scale(obs: dict[str, np.ndarray], vector_keys: list[str]) -> dict[str, np.ndarray]:
    """Per vector key, what fills half a bar: the start's magnitudes, at least 1 (so small
    values stay small rather than filling the picture)."""
    return {k: np.maximum(np.abs(np.asarray(obs[k], np.float32)), 1.0) * 2 for k in vector_keys}


def drift(dream: dict[str, np.ndarray], real: dict[str, np.ndarray], image_keys: list[str],
          vector_keys: list[str]) -> dict[str, float]:
    """How far the dream is from reality this step: PSNR (dB) of the first image, RMSE of
    the vectors."""
    out = {}
    if image_keys:
        a = np.asarray(dream[image_keys[0]], np.float64)
        b = np.asarray(real[image_keys[0]], np.float64)
        mse = float(np.mean((a - b) ** 2))
        out["psnr"] = 99.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
    if vector_keys:
        d = np.concatenate([np.asarray(dream[k], np.float64).reshape(-1) -
                            np.asarray(real[k], np.float64).reshape(-1) for k in vector_keys])
        out["rmse"] = float(np.sqrt(np.mean(d ** 2)))
    return out


def png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
