import numpy as np

from parentage.align import align_layers, as_signed_permutation, match_rows, procrustes


def _orthogonal(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_procrustes_recovers_a_rotation_of_the_residual_stream():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 32))
    rot = _orthogonal(32, rng)
    r = procrustes(x, x @ rot + 0.01 * rng.standard_normal((500, 32)))
    assert np.abs(r - rot).max() < 0.01


def test_procrustes_embeds_a_narrower_space_into_a_wider_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 16))
    y = np.concatenate([x, rng.standard_normal((400, 8)) * 0.01], axis=1)  # B widened by 8 dims
    r = procrustes(x, y)
    assert r.shape == (16, 24) and np.allclose(r @ r.T, np.eye(16), atol=1e-8)
    assert np.abs(r[:, :16] - np.eye(16)).max() < 0.01


def test_a_signed_permutation_is_recognised_and_a_rotation_is_not():
    rng = np.random.default_rng(2)
    perm = rng.permutation(64)
    signs = rng.choice([-1, 1], size=64)
    p = np.zeros((64, 64))
    p[np.arange(64), perm] = signs
    sp = as_signed_permutation(p)
    assert sp.dominance == 1.0 and (sp.perm == perm).all() and (sp.signs == signs).all()
    assert as_signed_permutation(_orthogonal(64, rng)).dominance < 0.3


def test_row_matching_undoes_a_permutation_with_scales_and_signs():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50, 20))
    perm = rng.permutation(50)
    b = a[perm] * rng.uniform(0.25, 4, size=(50, 1)) * rng.choice([-1, 1], size=(50, 1))
    ra, rb, cos = match_rows(a, b)
    assert (perm[rb] == ra).all() and np.allclose(np.abs(cos), 1)


def test_row_matching_is_rectangular_for_a_widened_ffn():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((40, 16))
    b = np.concatenate([a, rng.standard_normal((20, 16))])  # 20 new neurons
    ra, rb, _ = match_rows(a, b)
    assert len(ra) == 40 and (rb == ra).all()


def test_layer_alignment_finds_inserted_layers():
    # B = A with new layers at positions 2 and 5: evidence is high on the shifted diagonal only
    n_a, inserted = 6, {2, 5}
    b_layers = [j for j in range(n_a + 2)]
    mapping, k = {}, 0
    for j in b_layers:
        if j in inserted:
            continue
        mapping[k] = j
        k += 1
    score = np.random.default_rng(5).uniform(0, 1, size=(n_a, n_a + 2))
    for i, j in mapping.items():
        score[i, j] = 40.0
    al = align_layers(score, min_score=3.0)
    assert al.matched == sorted(mapping.items())
    assert al.notes() == ["layers 2 and 5 of B have no counterpart in A"]


def test_layer_alignment_finds_deleted_layers_and_never_forces_weak_matches():
    score = np.zeros((5, 4))
    for i, j in [(0, 0), (1, 1), (3, 2), (4, 3)]:  # A's layer 2 was removed
        score[i, j] = 20.0
    score[2, 2] = 2.0  # weak: below the floor
    al = align_layers(score, min_score=3.0)
    assert al.pairs == [(0, 0), (1, 1), (2, None), (3, 2), (4, 3)]
    assert align_layers(np.zeros((3, 3)), min_score=3.0).matched == []
