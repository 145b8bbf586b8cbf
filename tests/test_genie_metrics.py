"""Genie's scores on constructed cases."""
import numpy as np

from wmtool.nets.metrics import best_mapping_accuracy, chance_levels, nmi, psnr


def test_psnr_of_identical_and_of_noisy_frames():
    frame = np.random.default_rng(0).random((2, 8, 8, 3))
    assert np.all(np.isinf(psnr(frame, frame)))
    noisy = np.clip(frame + 0.1, 0, None)
    assert np.all(psnr(noisy, frame) < 25) and np.all(psnr(noisy, frame) > 15)


def test_a_renamed_mapping_scores_full_marks_and_noise_scores_chance():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 2000)
    renamed = np.array([7, 2, 5])[true]  # latent action ids are arbitrary names
    assert nmi(renamed, true) == 1.0 and best_mapping_accuracy(renamed, true) == 1.0
    noise = rng.integers(0, 8, 2000)
    chance = chance_levels(noise, true, rng)
    assert abs(nmi(noise, true) - chance["nmi"]) < 0.01 and nmi(noise, true) < 0.01
    assert abs(best_mapping_accuracy(noise, true) - chance["majority"]) < 0.05
    assert 0.3 < chance["majority"] < 0.4
