"""One size per test, from real collected items (pytester, in process)."""

import pytest
from isod.contract import Size
from isod.sizes import item_size, item_timeout

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.small

TABLE = {Size.SMALL: 1.0, Size.MEDIUM: 300.0, Size.LARGE: 900.0, Size.XLARGE: 900.0}


def sizes(pytester, source: str) -> dict[str, Size]:
    return {item.name: item_size(item, Size.SMALL)[0] for item in pytester.getitems(source)}


def test_a_param_mark_overrides_its_function_mark(pytester):
    got = sizes(pytester, """
        import pytest
        @pytest.mark.small
        @pytest.mark.parametrize("x", [1, pytest.param(2, marks=pytest.mark.medium)])
        def test_p(x):
            pass
        """)
    assert got == {"test_p[1]": Size.SMALL, "test_p[2]": Size.MEDIUM}


def test_a_param_timeout_is_the_one_that_counts(pytester):
    (item,) = pytester.getitems("""
        import pytest
        @pytest.mark.small(timeout=0.9)
        @pytest.mark.parametrize("x", [pytest.param(1, marks=pytest.mark.small(timeout=0.2))])
        def test_p(x):
            pass
        """)
    assert item_timeout(item, Size.SMALL, TABLE) == 0.2


def test_closer_levels_override_farther_ones(pytester):
    got = sizes(pytester, """
        import pytest
        pytestmark = pytest.mark.large
        @pytest.mark.small
        class TestC:
            @pytest.mark.medium
            def test_method(self):
                pass
            def test_class_size(self):
                pass
        def test_module_size():
            pass
        """)
    assert got == {"test_method": Size.MEDIUM, "test_class_size": Size.SMALL, "test_module_size": Size.LARGE}


@pytest.mark.parametrize("source", [
    "@pytest.mark.small\n@pytest.mark.medium\ndef test_x():\n    pass\n",
    "pytestmark = [pytest.mark.medium, pytest.mark.small]\ndef test_x():\n    pass\n",
    ("@pytest.mark.parametrize('v', [pytest.param(1, marks=[pytest.mark.small, pytest.mark.medium])])\n"
     "def test_x(v):\n    pass\n"),
])
def test_two_sizes_at_one_level_is_a_usage_error_naming_both(pytester, source):
    (item,) = pytester.getitems("import pytest\n" + source)
    with pytest.raises(pytest.UsageError, match=r"test_x.*multiple size markers at one level: small, medium"):
        item_size(item, Size.SMALL)


def test_the_same_size_twice_is_not_a_conflict(pytester):
    (item,) = pytester.getitems("""
        import pytest
        @pytest.mark.small(timeout=0.5)
        @pytest.mark.small
        def test_x():
            pass
        """)
    assert item_size(item, Size.MEDIUM) == (Size.SMALL, True)
