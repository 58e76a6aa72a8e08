"""Pictures that move: a small animation player that plays offline, in the book and in Jupyter.

Where an idea is a motion (a polygon of Euler steps closing in on a curve, a step size shrinking, a
field learning a spiral), a chapter draws the frames with matplotlib and shows them with
:func:`animate`.  The player is matplotlib's own JavaScript player (``Animation.to_jshtml``: a
slider and play/step buttons over frames embedded as PNG images), made fit for a book that reads
offline and is tested on every build:

* the stylesheet it links from a CDN (for its button icons) is dropped, and the buttons are drawn
  with plain characters instead, so nothing is fetched from elsewhere;
* its element ids, random in matplotlib, are derived from the animation's name, so that the same
  frames give the same HTML on every run;
* its size is bounded (``max_kib``), with a clear error instead of matplotlib's warning on stderr;
* the figure is closed once its frames are drawn, so no static copy appears below the player.

matplotlib is imported inside the functions: the engine needs only NumPy at import time.
"""

import logging
import re

_ICONS = {
    "fa fa-minus": "&minus;", "fa fa-fast-backward": "&#x23EE;", "fa fa-step-backward": "&#x25C2;",
    "fa fa-play fa-flip-horizontal": "&#x25C0;", "fa fa-pause": "&#x23F8;", "fa fa-play": "&#x25B6;",
    "fa fa-step-forward": "&#x25B8;", "fa fa-fast-forward": "&#x23ED;", "fa fa-plus": "+",
}


class Animation:
    """A finished animation: shows as the player in Jupyter and in the book.

    Attributes:
        name: the name its element ids are made from.
        frames: the number of frames.
        html: the player, a self-contained HTML fragment.
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


def _player_id(name):
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ValueError(f"name must be a word of letters, digits, '-' and '_' starting with a letter "
                         f"(it names the player's elements), got {name!r}")
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def offline_player(html, name):
    """matplotlib's ``to_jshtml`` output, without its CDN stylesheet and with ids made from ``name``."""
    match = re.search(r'id="_anim_img([0-9a-f]{32})"', html)
    if match is None:
        raise ValueError("html is not a player made by matplotlib's Animation.to_jshtml")
    html = html.replace(match.group(1), _player_id(name))
    html = re.sub(r'<link rel="stylesheet"\s*href="[^"]*font-awesome[^"]*">\s*', "", html)
    for icon, glyph in _ICONS.items():
        html = html.replace(f'<i class="{icon}"></i>', glyph)
    if re.search(r"""(?:href|src)=["']?(?:https?:)?//""", html):
        raise ValueError("the player still refers to an outside resource")
    return html


def animate(fig, draw, frames, *, name, interval=120, dpi=72, mode="loop", max_kib=800):
    """Draw ``frames`` frames of ``fig`` with ``draw(i)`` and return them as an offline player.

    Args:
        fig: a matplotlib figure holding the axes and artists to animate.
        draw: ``draw(i)`` updates the figure's artists for frame ``i`` (its return value is ignored).
        frames: the number of frames (an int of at least 2), drawn for ``i = 0, 1, ..., frames - 1``.
        name: a word naming the animation (such as the figure's name in the chapter); the player's
            element ids are made from it, so it must be unique on its page.
        interval: milliseconds between frames when playing.
        dpi: the resolution of each frame; 72 keeps a 5 x 3.5 in figure near 15-25 KiB a frame.
        mode: what the player does at the last frame: ``"loop"``, ``"once"`` or ``"reflect"``.
        max_kib: the largest player allowed, in KiB; a larger one raises instead of bloating the page.

    Returns:
        An :class:`Animation`; as the last value of a cell it shows as the player.

    Raises:
        ValueError: for bad arguments, or if the player would exceed ``max_kib``.
    """
    from matplotlib import pyplot as plt
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    from .errors import check_int, check_number

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not callable(draw):
        raise TypeError(f"draw must be callable as draw(i), got {type(draw).__name__}")
    frames = check_int("frames", frames, minimum=2)
    interval = check_number("interval", interval, low=0.0, strict=True)
    dpi = check_number("dpi", dpi, low=0.0, strict=True)
    max_kib = check_number("max_kib", max_kib, low=0.0, strict=True)
    if mode not in ("loop", "once", "reflect"):
        raise ValueError(f"mode must be 'loop', 'once' or 'reflect', got {mode!r}")
    _player_id(name)
    # matplotlib stops embedding frames past its limit and says so on stderr (which fails the
    # strict build): its limit is set just above ours, its message silenced, and the size checked here.
    logger = logging.getLogger("matplotlib.animation")
    level = logger.level
    with plt.rc_context({"animation.embed_limit": max_kib / 1024 * 1.05, "savefig.dpi": dpi}):
        movie = FuncAnimation(fig, lambda i: draw(i), frames=frames, interval=interval,
                              repeat=mode != "once", blit=False)
        try:
            logger.setLevel(logging.ERROR)
            html = movie.to_jshtml(default_mode=mode)
        finally:
            logger.setLevel(level)
            plt.close(fig)
    player = Animation(name, frames, offline_player(html, name))
    drawn = len(re.findall(r"frames\[\d+\] = ", player.html))
    if drawn < frames or player.kib > max_kib:
        raise ValueError(f"animation {name!r} needs more than max_kib = {max_kib:g} KiB "
                         f"({drawn} of {frames} frames fit); use fewer frames, a smaller figure or a "
                         "lower dpi, or raise max_kib")
    return player
