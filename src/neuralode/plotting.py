"""Pictures that move: a small animation player that plays offline, in the book and in Jupyter.

Where an idea is a motion (a polygon of Euler steps closing in on a curve, a step size shrinking, a
field learning a spiral), a chapter draws the frames with matplotlib and shows them with
:func:`animate`: an image, a slider and a few buttons, with every frame embedded in the page as a
PNG image, so nothing is fetched from elsewhere. The player is made for a book that is tested:

* its element id comes from the animation's name, so the same frames give the same HTML every time;
* its frames are reduced to a palette of at most ``colors`` colours, which makes line drawings
  several times smaller, and its total size is bounded (``max_kib``) with a clear error;
* the figure is closed once its frames are drawn, so no static copy appears below the player.

A page may hold several players; each one's script finds its own elements by the player's id. In
Jupyter the player runs in a trusted notebook (one whose cells you executed); an untrusted one shows
the first frame. matplotlib and Pillow are imported inside the functions: the engine needs only
NumPy at import time.
"""

import base64
import html as html_escape
import io
import json
import re

_STYLE = """<style>
.animation-player { display: inline-block; text-align: center; }
.animation-player img { max-width: 100%; height: auto; }
.animation-player .animation-controls { display: flex; gap: 4px; align-items: center;
  justify-content: center; flex-wrap: wrap; margin: 4px 0; font-size: 0.9em; }
.animation-player button { min-width: 2.2em; padding: 1px 6px; cursor: pointer; }
.animation-player input[type=range] { width: 12em; }
</style>"""

_SCRIPT = """<script>
(function () {
  var root = document.getElementById(%(id)s);
  var frames = JSON.parse(root.querySelector("script.animation-frames").textContent);
  var image = root.querySelector("img"), slider = root.querySelector("input[type=range]");
  var counter = root.querySelector(".animation-counter"), loop = %(loop)s, timer = null, frame = 0;
  function show(i) {
    frame = Math.max(0, Math.min(frames.length - 1, i));
    image.src = frames[frame];
    slider.value = frame;
    counter.textContent = (frame + 1) + " / " + frames.length;
  }
  function pause() { if (timer !== null) { clearInterval(timer); timer = null; } }
  function tick() {
    if (frame + 1 < frames.length) { show(frame + 1); }
    else if (loop) { show(0); }
    else { pause(); }
  }
  function play() {
    pause();
    if (!loop && frame + 1 >= frames.length) { show(0); }
    timer = setInterval(tick, %(interval)d);
  }
  var actions = {
    first: function () { pause(); show(0); }, previous: function () { pause(); show(frame - 1); },
    play: play, pause: pause,
    next: function () { pause(); show(frame + 1); }, last: function () { pause(); show(frames.length - 1); }
  };
  root.querySelectorAll("button[data-action]").forEach(function (button) {
    button.addEventListener("click", actions[button.dataset.action]);
  });
  slider.addEventListener("input", function () { pause(); show(parseInt(slider.value, 10)); });
})();
</script>"""

_BUTTONS = (("first", "First frame", "|&#x25C0;"), ("previous", "Previous frame", "&#x25C2;"),
            ("play", "Play", "&#x25B6;"), ("pause", "Pause", "||"),
            ("next", "Next frame", "&#x25B8;"), ("last", "Last frame", "&#x25B6;|"))
"""Each button's action, title, and label: characters that every system font has."""


class Animation:
    """A finished animation: shows as the player in Jupyter and in the book.

    Attributes:
        name: the animation's name; the player's element id is made from it.
        frames: the number of frames.
        html: the player, a self-contained HTML fragment (style, image, controls, frames, script).
    """

    def __init__(self, name, frames, html):
        self.name, self.frames, self.html = name, frames, html

    @property
    def kib(self):
        """The size of the player's HTML in KiB."""
        return len(self.html.encode()) / 1024

    def _repr_html_(self):
        return self.html

    def __repr__(self):
        return f"<Animation {self.name!r}: {self.frames} frames>"


def player_id(name):
    """The element id of the player named ``name``, or a ``ValueError`` if the name will not do."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,80}", name):
        raise ValueError(f"name must be a word of letters, digits, '-' and '_' starting with a letter "
                         f"(it names the player's element), got {name!r}")
    return f"animation-{name}"


def frame_png(fig, dpi, colors):
    """The figure as it is drawn now, as PNG bytes with a palette of at most ``colors`` colours."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    image = Image.open(buffer).convert("RGB")
    palette = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="png", optimize=True)
    return out.getvalue()


def player_html(name, frames, *, interval=120, loop=True, alt=""):
    """The HTML of a player over ``frames`` (a list of PNG images as bytes)."""
    uid = player_id(name)
    urls = ["data:image/png;base64," + base64.b64encode(png).decode("ascii") for png in frames]
    buttons = "".join(f'<button type="button" data-action="{action}" title="{title}" '
                      f'aria-label="{title}">{label}</button>' for action, title, label in _BUTTONS)
    return (
        f'{_STYLE}\n<div class="animation-player" id="{uid}">\n'
        f'<img src="{urls[0]}" alt="{html_escape.escape(alt)}">\n'
        f'<div class="animation-controls">{buttons}\n'
        f'<input type="range" min="0" max="{len(urls) - 1}" step="1" value="0" aria-label="Frame">'
        f'<span class="animation-counter">1 / {len(urls)}</span></div>\n'
        f'<script type="application/json" class="animation-frames">{json.dumps(urls)}</script>\n'
        + _SCRIPT % {"id": json.dumps(uid), "loop": "true" if loop else "false", "interval": int(interval)}
        + "\n</div>"
    )


def animate(fig, draw, frames, *, name, interval=120, dpi=80, colors=64, loop=True, alt="", max_kib=600):
    """Draw ``frames`` frames of ``fig`` with ``draw(i)`` and return them as an offline player.

    Args:
        fig: a matplotlib figure holding the axes and artists to animate.
        draw: ``draw(i)`` updates the figure's artists for frame ``i`` (its return value is ignored).
        frames: the number of frames (an int of at least 2), drawn for ``i = 0, 1, ..., frames - 1``.
        name: a word naming the animation (such as the figure's name in the chapter); the player's
            element id is made from it, so it must be unique on its page.
        interval: milliseconds between frames when playing.
        dpi: the resolution of each frame.
        colors: the most colours a frame keeps (2 to 256); line drawings need few.
        loop: whether playing starts again after the last frame.
        alt: a text for readers who cannot see the image.
        max_kib: the largest player allowed, in KiB; a larger one raises instead of bloating the page.

    Returns:
        An :class:`Animation`; as the last value of a cell it shows as the player.

    Raises:
        TypeError, ValueError: for bad arguments, or if the player would exceed ``max_kib``.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> (line,) = ax.plot([0, 1], [0, 0])
        >>> animate(fig, lambda i: line.set_ydata([0, i]), 3, name="fig-demo")
        <Animation 'fig-demo': 3 frames>
    """
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    from .errors import check_int, check_number

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not callable(draw):
        raise TypeError(f"draw must be callable as draw(i), got {type(draw).__name__}")
    frames = check_int("frames", frames, minimum=2)
    interval = check_number("interval", interval, low=0.0, strict=True)
    dpi = check_number("dpi", dpi, low=0.0, strict=True)
    colors = check_int("colors", colors, minimum=2)
    max_kib = check_number("max_kib", max_kib, low=0.0, strict=True)
    if colors > 256:
        raise ValueError(f"colors must be at most 256 (a PNG palette), got {colors}")
    if not isinstance(loop, bool) or not isinstance(alt, str):
        raise TypeError("loop must be True or False, and alt a string")
    player_id(name)
    images, size = [], 0.0
    try:
        for i in range(frames):
            draw(i)
            images.append(frame_png(fig, dpi, colors))
            size += len(images[-1]) * 4 / 3 / 1024          # base64 makes it a third larger
            if size > max_kib:
                raise ValueError(f"animation {name!r} needs more than max_kib = {max_kib:g} KiB "
                                 f"({i} of {frames} frames fit); use fewer frames, a smaller figure, a "
                                 "lower dpi or fewer colors, or raise max_kib")
    finally:
        plt.close(fig)
    return Animation(name, frames, player_html(name, images, interval=interval, loop=loop, alt=alt))
