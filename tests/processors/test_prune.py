"""Pruning keeps exactly what each of neural-search's definitions keeps."""

import pytest

from processors.prune import prune

pytestmark = pytest.mark.unit

V = {"a": 4.0, "b": 2.0, "c": 1.0, "d": 0.5, "e": 0.5}  # total 8.0, max 4.0


@pytest.mark.parametrize("ptype,ratio,kept", [
    ("top_k", 2, {"a", "b"}),
    ("top_k", 10, {"a", "b", "c", "d", "e"}),
    ("max_ratio", 0.25, {"a", "b", "c"}),          # keep w >= 0.25 * 4 = 1.0 (inclusive)
    ("max_ratio", 0.3, {"a", "b"}),
    ("abs_value", 1.0, {"a", "b", "c"}),            # keep w >= 1.0
    ("abs_value", 0.0, {"a", "b", "c", "d", "e"}),
    ("alpha_mass", 0.75, {"a", "b"}),               # running sums 4, 6 <= 6; 7 > 6
    ("alpha_mass", 0.875, {"a", "b", "c"}),         # 7 <= 7
    ("alpha_mass", 0.4, set()),                     # 4 > 3.2: nothing kept
    ("none", 0, {"a", "b", "c", "d", "e"}),
])
def test_prune_definitions(ptype, ratio, kept):
    out = prune(ptype, ratio, dict(V))
    assert set(out) == kept
    assert all(out[t] == V[t] for t in out)  # weights untouched


def test_prune_rejects_non_positive_weights():
    with pytest.raises(ValueError, match="Pruned values must be positive"):
        prune("top_k", 1, {"a": 0.0})
