"""neuralode.glue writes what MyST-NB's glue writes, so the chapters' {glue:...} roles read it."""

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import Markdown
from IPython.utils.capture import capture_output

from neuralode.glue import glue


def outputs(glue_function, *args, **kwargs):
    InteractiveShell.instance()
    with capture_output() as captured:
        glue_function(*args, **kwargs)
    return [(o.data, o.metadata) for o in captured.outputs]


@pytest.mark.parametrize("value, display", [("0.53", False), (Markdown("$2 \\times 10^{-3}$"), False),
                                            (97, False), ("shown", True)])
def test_same_output_as_myst_nb(value, display):
    from myst_nb import glue as myst_glue

    ours = outputs(glue, "ch99_key", value, display=display)
    theirs = outputs(myst_glue, "ch99_key", value, display=display)
    assert ours == theirs and len(ours) == 1
    data, metadata = ours[0]
    assert metadata["scrapbook"]["name"] == "ch99_key"
    assert all(key.startswith("application/papermill.record/") for key in data) != display


@pytest.mark.parametrize("name", ["", "two words", "a-b", 3, None])
def test_bad_names(name):
    with pytest.raises(TypeError, match="name must be"):
        glue(name, "1")


@pytest.mark.parametrize("x, digits, text", [
    (2.44e-5, 2, "2.4 \\times 10^{-5}"), (1e-9, 2, "10^{-9}"), (9.96e-4, 2, "10^{-3}"),
    (-0.001, 1, "-10^{-3}"), (-3.21e7, 3, "-3.21 \\times 10^{7}"), (0.5, 1, "5 \\times 10^{-1}"),
])
def test_power_text(x, digits, text):
    from neuralode.glue import power_text

    assert power_text(x, digits) == text


def test_glue_power_is_the_chapters_former_helper():
    from neuralode.glue import glue_power

    (data, metadata), = outputs(glue_power, "ch99_err", 2.44e-5)
    assert data["application/papermill.record/text/markdown"] == "$2.4 \\times 10^{-5}$"
    with pytest.raises(TypeError, match="digits"):
        glue_power("ch99_err", 1.0, digits=0)
