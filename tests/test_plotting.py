"""The offline animation player of neuralode.plotting."""

import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from neuralode.plotting import animate, player_html  # noqa: E402

FRAME = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=\\\s]+")


def sine_player(frames=6, name="fig-test-sine", **options):
    fig, ax = plt.subplots(figsize=(3, 2))
    x = np.linspace(0.0, 2 * np.pi, 50)
    (line,) = ax.plot(x, np.sin(x))
    return animate(fig, lambda i: line.set_ydata(np.sin(x + i)), frames, name=name, **options), fig


def test_player_has_every_frame_and_nothing_from_outside():
    player, _ = sine_player(frames=6)
    listed = re.search(r'<script type="application/json" class="animation-frames">(.*?)</script>',
                       player.html).group(1)
    frames = json.loads(listed)
    assert len(frames) == 6 and len(set(frames)) == 6          # each frame drawn, and different
    assert all(FRAME.fullmatch(f) for f in frames)
    assert not re.search(r"https?://|(?:href|src)=[\"']?//", FRAME.sub("", player.html))
    assert 'id="animation-fig-test-sine"' in player.html and "max=\"5\"" in player.html
    assert repr(player) == "<Animation 'fig-test-sine': 6 frames>"


def test_same_frames_same_html():
    """The id comes from the name, not from a random number: the HTML is reproducible."""
    first, _ = sine_player()
    second, _ = sine_player()
    assert first.html == second.html


def test_palette_frames_are_smaller():
    few, _ = sine_player(frames=4, colors=16)
    many, _ = sine_player(frames=4, colors=256)
    assert few.kib < many.kib


def test_figure_is_closed_and_loop_option():
    player, fig = sine_player(loop=False)
    assert not plt.fignum_exists(fig.number)
    assert "loop = false" in player.html


def test_too_large_raises_without_writing_to_stderr(capfd):
    with pytest.raises(ValueError, match="max_kib"):
        sine_player(frames=40, max_kib=5)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("kwargs, error, phrase", [
    ({"frames": 1}, ValueError, "frames"), ({"frames": 2.5}, ValueError, "frames"),
    ({"name": "two words"}, ValueError, "name"), ({"name": 3}, ValueError, "name"),
    ({"interval": 0}, ValueError, "interval"), ({"dpi": -1}, ValueError, "dpi"),
    ({"colors": 300}, ValueError, "colors"), ({"colors": 1}, ValueError, "colors"),
    ({"loop": "yes"}, TypeError, "loop"), ({"max_kib": float("nan")}, ValueError, "max_kib"),
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


def test_alt_text_is_escaped():
    html = player_html("a", [b"\x89PNG", b"\x89PNG"], alt='a "quoted" <b>')
    assert 'alt="a &quot;quoted&quot; &lt;b&gt;"' in html
