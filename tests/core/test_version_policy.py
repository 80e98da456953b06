from __future__ import annotations

import pytest

from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.core.version_policy import All, Latest, Specific, VersionPolicy


@pytest.mark.parametrize(
    ("policy", "on_disk", "expected"),
    [
        (Latest(), [], set()),
        (Latest(), [1], {1}),
        (Latest(), [3, 1, 2], {3}),
        (Latest(2), [3, 1, 2], {2, 3}),
        (Latest(5), [3, 1, 2], {1, 2, 3}),
        (Latest(1), [10, 9, 100], {100}),
        (All(), [], set()),
        (All(), [4, 1, 7], {1, 4, 7}),
        (Specific([2, 9]), [1, 2, 3], {2}),
        (Specific([2, 3]), [1, 2, 3], {2, 3}),
        (Specific([9]), [1, 2, 3], set()),
        (Specific([]), [1, 2], set()),
    ],
)
def test_aspired(policy: VersionPolicy, on_disk: list[int], expected: set[int]) -> None:
    assert policy.aspired(on_disk) == expected
    assert policy.aspired(iter(on_disk)) == expected  # any iterable, consumed once


@pytest.mark.parametrize(
    ("policy", "text", "rep"),
    [
        (Latest(), "latest(1)", "Latest(num_versions=1)"),
        (Latest(3), "latest(3)", "Latest(num_versions=3)"),
        (All(), "all", "All()"),
        (Specific([4, 1]), "specific(1, 4)", "Specific(versions=[1, 4])"),
    ],
)
def test_readable(policy: VersionPolicy, text: str, rep: str) -> None:
    assert str(policy) == text
    assert repr(policy) == rep


def test_values_compare_and_hash() -> None:
    assert Latest(2) == Latest(2) != Latest(1)
    assert Specific([1, 2]) == Specific([2, 1])
    assert len({All(), All(), Specific([1]), Specific([1])}) == 2


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_latest_rejects_bad_counts(bad: object) -> None:
    with pytest.raises(ServingError) as info:
        Latest(bad)  # type: ignore[arg-type]
    assert info.value.code == Code.INVALID_ARGUMENT


def test_specific_rejects_bad_versions() -> None:
    with pytest.raises(ServingError) as info:
        Specific([1, -2])
    assert info.value.code == Code.INVALID_ARGUMENT
