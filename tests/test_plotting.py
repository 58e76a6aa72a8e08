"""The offline animation player of neuralode.plotting."""

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from neuralode.plotting import animate, offline_player  # noqa: E402

FRAME = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=\\\s]+")


def sine_player(frames=6, name="fig-test-sine", **options):
    fig, ax = plt.subplots(figsize=(3, 2))
    x = np.linspace(0.0, 2 * np.pi, 50)
    (line,) = ax.plot(x, np.sin(x))
    return animate(fig, lambda i: line.set_ydata(np.sin(x + i)), frames, name=name, **options), fig


def test_player_has_every_frame_and_nothing_from_outside():
    player, _ = sine_player(frames=6)
    frames = FRAME.findall(player.html)
    assert len(frames) == 6 and len(set(frames)) == 6          # each frame drawn, and different
    assert not re.search(r"https?://|(?:href|src)=[\"']?//", FRAME.sub("", player.html))
    assert "font-awesome" not in player.html and 'class="fa' not in player.html
    assert repr(player) == "<Animation 'fig-test-sine': 6 frames>"


def test_same_frames_same_html():
    """The ids come from the name, not from a random number: the HTML is reproducible."""
    first, _ = sine_player()
    second, _ = sine_player()
    assert first.html == second.html
    assert "_anim_imgfig_test_sine" in first.html


def test_figure_is_closed_and_modes():
    player, fig = sine_player(mode="once")
    assert not plt.fignum_exists(fig.number)
    assert re.search(r'value="once" id="_anim_radio1_fig_test_sine"\s+checked', player.html)


def test_too_large_raises_without_writing_to_stderr(capfd):
    with pytest.raises(ValueError, match="max_kib"):
        sine_player(frames=40, max_kib=10)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("kwargs, error, phrase", [
    ({"frames": 1}, ValueError, "frames"), ({"frames": 2.5}, ValueError, "frames"),
    ({"name": "two words"}, ValueError, "name"), ({"name": 3}, ValueError, "name"),
    ({"interval": 0}, ValueError, "interval"), ({"dpi": -1}, ValueError, "dpi"),
    ({"mode": "bounce"}, ValueError, "mode"), ({"max_kib": float("nan")}, ValueError, "max_kib"),
])
def test_bad_arguments(kwargs, error, phrase):
    with pytest.raises(error, match=phrase):
        sine_player(**kwargs)


def test_bad_figure_and_draw():
    with pytest.raises(TypeError, match="fig"):
        animate("figure", lambda i: None, 3, name="a")
    fig = plt.figure()
    with pytest.raises(TypeError, match="draw"):
        animate(fig, None, 3, name="a")
    plt.close(fig)
    with pytest.raises(ValueError, match="to_jshtml"):
        offline_player("<div>no player</div>", "a")
