import pytest

from model.variants import ALL_VARIANTS, Variant


def test_eighteen_variants_with_unique_canonical_names():
    names = {v.name for v in ALL_VARIANTS}
    assert len(ALL_VARIANTS) == 18
    assert len(names) == 18
    assert "fpn-64-prelu" in names
    assert "ssd-32-relu" in names


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=str)
def test_name_round_trips(variant):
    assert Variant.parse(variant.name) == variant


@pytest.mark.parametrize(
    "name", ["fpn-65-prelu", "fpn-64", "rpn-64-prelu", "fpn-64-gelu", "", "fpn-x-relu"]
)
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match=r"width|head|activation|variant name"):
        Variant.parse(name)


def test_width_32_stage_is_six_blocks_with_extra_activation():
    v = Variant.parse("fpn-32-prelu")
    assert [b.expansion for b in v.stage] == [2, 2, 4, 4, 2, 2]
    assert [b.stride for b in v.stage] == [1, 1, 1, 1, 1, 2]
    assert v.activation_after_projection
    assert not Variant.parse("fpn-48-prelu").activation_after_projection
