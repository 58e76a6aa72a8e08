"""Numbers a cell computes, handed to the chapter's prose: the book's ``glue``.

A chapter states a result in its prose with MyST-NB's ``{glue:text}`key` `` role, and the cell that
computes the result stores it under ``key`` (CONTRIBUTING.md, section 3b), so that prose and output
cannot drift apart. This is the storing half. It writes exactly what MyST-NB's own ``glue`` writes
(a display output whose data are prefixed ``application/papermill.record/`` and whose metadata name
the key), without importing MyST-NB's notebook tooling, which costs a chapter more than a second.

IPython is imported inside the function: the engine needs only NumPy at import time.
"""

PREFIX = "application/papermill.record/"


def glue(name, value, display=False):
    """Store ``value`` under ``name`` for the chapter's ``{glue:...}`` roles.

    Args:
        name: the key, global to the book: prefix it with the chapter (``"ch05_ratio"``).
        value: what the prose shows. Glue the text as it should read (``f"{ratio:.2f}"``), formatted
            under the portability rule, or an ``IPython.display.Markdown`` for a formula (read with
            ``{glue:md}`key:myst` ``).
        display: also show the value as the cell's output.

    Raises:
        TypeError: if ``name`` is not a non-empty string of letters, digits and underscores.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise TypeError(f"name must be a word of letters, digits and underscores, got {name!r}")
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    data, metadata = format_display_data(value)
    prefix = "" if display else PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    show({prefix + mime: content for mime, content in data.items()}, raw=True, metadata=metadata)


def power_text(x, digits=2):
    """``x`` as LaTeX in powers of ten with ``digits`` significant digits: ``"2.4 \\times 10^{-5}"``.

    Example:
        >>> power_text(2.44e-5), power_text(1e-9), power_text(-0.001, digits=1)
        ('2.4 \\\\times 10^{-5}', '10^{-9}', '-10^{-3}')
    """
    if not isinstance(digits, int) or isinstance(digits, bool) or digits < 1:
        raise TypeError(f"digits must be an integer of at least 1, got {digits!r}")
    mantissa, exponent = f"{float(x):.{digits - 1}e}".split("e")
    power = f"10^{{{int(exponent)}}}"
    if abs(float(mantissa)) == 1.0:
        return ("-" if mantissa.startswith("-") else "") + power
    return f"{mantissa} \\times {power}"


def glue_power(name, x, digits=2):
    """Store ``x`` under ``name`` as a formula in powers of ten (read it with ``{glue:md}`name:myst` ``).

    Used for errors and tolerances the prose states as $2.4 \\times 10^{-5}$; ``digits`` follows the
    portability rule (CONTRIBUTING.md, section 3a).
    """
    from IPython.display import Markdown

    glue(name, Markdown(f"${power_text(x, digits)}$"))
