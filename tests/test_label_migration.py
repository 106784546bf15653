"""EAR's similarity-based uni-modal label migration (Eq. 1-2 + post-processing S-17..S-21) on hand-made inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.label_migration import (
    TAU_AUDIO,
    TAU_VISUAL,
    cosine_matrix,
    migrate_batch,
    migrate_from_similarity,
    migrate_labels,
)


def test_duplicates_are_averaged_labels_of_one_stay_one_and_low_similarity_gives_nothing():
    # 4 segments, 2 classes, threshold 0.85 (worked by hand in the comments)
    sim = torch.tensor([[1.00, 0.90, 0.95, 0.30],
                        [0.90, 1.00, 0.88, 0.20],
                        [0.95, 0.88, 1.00, 0.86],
                        [0.30, 0.20, 0.86, 1.00]])
    av = torch.tensor([[1, 0], [0, 0], [1, 1], [0, 0]])
    # M = [[1,1,1,0],[1,1,1,0],[1,1,1,1],[0,0,1,1]]
    # Y~ = (S*M) @ Y: row0 [1+.95, .95], row1 [.9+.88, .88], row2 [.95+1, 1], row3 [.86, .86]
    # N = M @ Y:      row0 [2, 1],      row1 [2, 1],       row2 [2, 1],    row3 [1, 1]
    # Y- = Y~ / N:    row0 [.975, .95], row1 [.89, .88],   row2 [.975, 1], row3 [.86, .86]
    # max(Y-, Y):     row0 [1, .95] (its own label stays 1), row1 [.89, .88] (duplicate: mean similarity),
    #                 row2 [1, 1], row3 [.86, .86] (segment 0 at 0.30 is below the threshold: nothing from it)
    expected = torch.tensor([[1.0, 0.95], [0.89, 0.88], [1.0, 1.0], [0.86, 0.86]])
    out = migrate_from_similarity(sim, av, 0.85)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # without the averaging, row 1 class 0 would be the 1.78 of Eq. 2 (Fig. S-6's "1.8")
    assert float(((sim * (sim > 0.85)) @ av.float())[1, 0]) == pytest.approx(1.78)


def test_the_threshold_is_strict_and_unlabelled_batches_stay_empty():
    sim = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    av = torch.tensor([[1, 0], [0, 0]])
    torch.testing.assert_close(migrate_from_similarity(sim, av, 0.5), av.float())  # 0.5 is not > 0.5
    torch.testing.assert_close(migrate_from_similarity(sim, av, 0.49), torch.tensor([[1.0, 0.0], [0.5, 0.0]]))
    assert not migrate_from_similarity(sim, torch.zeros(2, 2), 0.0).any()
    with pytest.raises(ValueError, match="expected"):
        migrate_from_similarity(torch.ones(2, 3), av, 0.5)


def test_features_give_cosine_similarities_numpy_and_torch_alike():
    # unit vectors whose cosines are exact: (1,0).(0.96,0.28) = 0.96, (1,0).(0.8,0.6) = 0.8
    feats = np.array([[1.0, 0.0], [0.96, 0.28], [0.8, 0.6], [2.0, 0.0]], np.float32)  # the last: length 2, same way
    av = np.array([[1, 0], [0, 1], [0, 0], [0, 0]], np.uint8)
    out = migrate_labels(feats, av, 0.95)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    # seg1 gets class 0 from seg0 (0.96) and keeps its own class 1; seg3 (cos 1 with seg0) gets 1.0; seg2: nothing
    # (0.8 and 0.936 < 0.95); seg0 gets class 1 from seg1 (0.96)
    np.testing.assert_allclose(out, [[1.0, 0.96], [0.96, 1.0], [0.0, 0.0], [1.0, 0.96]], atol=1e-6)
    as_torch = migrate_labels(torch.from_numpy(feats), torch.from_numpy(av), 0.95)
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), out)
    np.testing.assert_allclose(cosine_matrix(torch.from_numpy(feats))[0].numpy(), [1.0, 0.96, 0.8, 1.0], atol=1e-6)


def test_a_silent_zero_embedding_takes_no_label():
    feats = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    out = migrate_labels(feats, np.array([[1], [0]]), 0.5)
    np.testing.assert_array_equal(out, [[1.0], [0.0]])


def test_a_batch_of_two_clips_migrates_across_clips_and_leaves_padding_out():
    # clip A: (1,0) labelled c0, (0,1) labelled c1, (0.6,0.8) unlabelled
    # clip B: (0.96,0.28), (0.28,0.96) unlabelled, then a PADDED segment (0.96,0.28) "labelled" c1
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
                          [[0.96, 0.28], [0.28, 0.96], [0.96, 0.28]]])
    av = torch.tensor([[[1, 0], [0, 1], [0, 0]],
                       [[0, 0], [0, 0], [0, 1]]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    out = migrate_batch(feats, av, valid, 0.95)
    # cos > 0.95 only between (1,0)~(0.96,0.28) and (0,1)~(0.28,0.96), both 0.96; (0.6,0.8)~(0.28,0.96) = 0.936.
    # Had the padding counted, B0 (identical to it) would have class 1 at 1.0.
    expected = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]],
                             [[0.96, 0.0], [0.0, 0.96], [0.0, 0.0]]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # the same clips in separate batches: B's segments take nothing
    alone = migrate_batch(feats[1:], av[1:], valid[1:], 0.95)
    assert not alone.any()


def test_reconstructed_thresholds_are_the_defaults():
    from inference.models.ear_generator import EARGeneratorConfig

    assert (TAU_AUDIO, TAU_VISUAL) == (0.98, 0.95)
    config = EARGeneratorConfig()
    assert (config.tau_audio, config.tau_visual) == (0.98, 0.95)
    assert (config.lambda_audio, config.lambda_visual) == (0.05, 0.15)
