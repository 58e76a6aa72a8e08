"""Find numbers that a chapter's prose states but none of its cells computes.

A number the prose states that a cell computes must be put there by the cell (MyST-NB's ``glue``
and ``{glue:text}``), so that a re-executed chapter cannot say one thing and print another. Typed
numbers remain for inputs, definitions and cited figures. This module finds every number typed in
a chapter's prose (its markdown, the math in it, and the figure captions) and accepts it when

* it appears among the chapter's inputs: its code cells, or the engine's source in ``src/`` (a
  constant such as a Butcher coefficient or the controller's safety factor), token for token;
* it appears in the chapter's stored outputs (``notebooks/<chapter>.ipynb``, glued values
  included), possibly rounded: the prose's "0.54" matches an output "0.535" (but not "0.52");
* its sentence carries a citation (``{cite...}``): a figure reported by someone else (a row of a
  ``{table}`` directive counts as cited when the table's caption cites);
* it is small (an integer of at most 20: chapter and figure numbers, orders, counts in examples)
  or a year; or
* the chapter's allowlist (``tests/prose_numbers_allow.yml``) names it, with a reason.

Anything else is reported with its line and sentence.  Usage::

    python tools/prose_numbers.py book/14_latent_odes.md [...]   # exits 1 if a chapter has any
"""

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from neuralode.glue import PREFIX as GLUE_RECORD     # the MIME-type prefix of a glued value

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = ROOT / "tests" / "prose_numbers_allow.yml"
SMALL = 20
YEARS = range(1900, 2031)

_NUMBER = re.compile(
    r"(?<![\w.\\^_{])(?<!\w-)"                  # not inside a word, a label, a macro or an exponent
    r"(?P<mant>\d{1,3}(?:[ \u2009\u202f,]\d{3})+(?!\d)|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+−]?\d+)?"
    r"(?:\s*\\times\s*10\^\{?(?P<texexp>[-−]?\d+)\}?)?"
    r"(?P<pct>\s?%|\\%)?"
    r"(?![\w])"
)
_TEX_POWER = re.compile(r"(?<![\d.])10\^\{?(?P<texexp>[-−]?\d+)\}?")
_ROLES_DROPPED = re.compile(r"\{(?:numref|ref|doc|eq|term|download|glue:\w+|glue)\}`[^`]*`")
_TABLE = re.compile(r"^\s*(`{3,}|:{3,})\{table\}\s*(.*)$")
_CITE = re.compile(r"\{cite(?::\w+)?\}`[^`]*`")
_LABEL_LINE = re.compile(r"^\s*(?::[\w-]+:.*|\([\w-]+\)=)\s*$")
_URL = re.compile(r"https?://\S+")
_SKIPPED = ("**Time to learn**",)
"""Lines whose numbers are the authors' estimates, not results."""


@dataclass
class Number:
    """A number typed in prose: its text, value, decimals shown, line, and sentence."""

    text: str
    value: float
    decimals: int
    significant: int
    scientific: bool
    line: int
    sentence: str
    percent: bool = False
    computed: bool = False
    """Whether a cell's output shows it: then the cell must glue it instead of the prose typing it."""


# ----------------------------------------------------------------------------------------------
# Reading a chapter


def split_chapter(text):
    """``(prose, code)``: prose as ``(line number, text)`` pairs; code as one string.

    Code cells are ``{code-cell}`` fences; their YAML options go to the code, except a figure
    caption, which is prose.  Plain code fences (```` ```python ````) and directive option lines
    are neither.  A ``{table}`` directive's caption is prose, and so are its rows, each carrying the
    caption's citations: a table of figures reported by someone else cites them once, in its caption.
    """
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":
        start = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0) + 1
    prose, code, i = [], [], start
    while i < len(lines):
        line = lines[i]
        table = _TABLE.match(line)
        if table:
            end = _fence_end(lines, i, table.group(1))
            caption = table.group(2)
            cites = " ".join(_CITE.findall(caption))
            prose.append((i + 1, caption))
            for j in range(i + 1, end):
                if not _LABEL_LINE.match(lines[j]):
                    prose.append((j + 1, f"{lines[j]} {cites}" if lines[j].lstrip().startswith("|") else lines[j]))
            i = end + 1
            continue
        fence = re.match(r"^(`{3,}|~{3,})\s*(\{code-cell\}|\S*)", line)
        if fence and fence.group(2) in ("{code-cell}",) or fence and fence.group(2) and not fence.group(2).startswith("{"):
            end = _fence_end(lines, i, fence.group(1))
            body = lines[i + 1:end]
            if fence.group(2) == "{code-cell}":
                options, source = _cell_options(body)
                code.append("\n".join(source))
                caption = _caption(options)
                if caption:
                    prose.append((i + 1, caption))
            i = end + 1
            continue
        if not (_LABEL_LINE.match(line) or re.match(r"^\s*(`{3,}|:{3,})", line) or line.startswith(_SKIPPED)):
            prose.append((i + 1, line))
        i += 1
    return prose, "\n".join(code)


def _fence_end(lines, i, marker):
    for j in range(i + 1, len(lines)):
        if lines[j].strip() == marker:
            return j
    return len(lines)


def _cell_options(body):
    """Split a code cell's body into its options (YAML or ``:key:`` lines) and its source."""
    if body and body[0].strip() == "---":
        end = next((j for j in range(1, len(body)) if body[j].strip() == "---"), 0)
        return "\n".join(body[1:end]), body[end + 1:]
    n = 0
    while n < len(body) and re.match(r"^:\w[\w-]*:", body[n]):
        n += 1
    return "\n".join(body[:n]), body[n:]


def _caption(options):
    try:
        data = yaml.safe_load(options) if options.strip().startswith(("mystnb", "tags")) else None
    except yaml.YAMLError:
        return ""
    figure = ((data or {}).get("mystnb") or {}).get("figure") or {}
    return str(figure.get("caption", "")).replace("\n", " ")


def outputs_text(notebook_path):
    """Every text output of a stored notebook (streams, results, glued values, error messages)."""
    if not notebook_path.is_file():
        return ""
    nb = json.loads(notebook_path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out.get("text", "")))
            elif out.get("output_type") == "error":
                parts.append(out.get("evalue", ""))
            else:
                for key, value in out.get("data", {}).items():
                    # a glued value is stored under its MIME type prefixed by GLUE_RECORD
                    if key.removeprefix(GLUE_RECORD) in ("text/plain", "text/markdown", "text/latex"):
                        parts.append("".join(value))
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Numbers


def _parse(match):
    """``(value, decimals, significant digits, scientific)`` of a matched number, or ``None``."""
    mant = re.sub(r"[ \u2009\u202f,]", "", match.group("mant"))
    exp = match.group("exp") or ""
    texexp = match.group("texexp")
    try:
        value = float(mant + exp.replace("−", "-"))
    except ValueError:
        return None
    scientific = bool(exp or texexp)
    if texexp:
        value *= 10.0 ** int(texexp.replace("−", "-"))
    if match.group("pct"):
        value /= 100.0
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    significant = len(mant.replace(".", "").lstrip("0")) or 1
    return value, decimals, significant, scientific


def numbers_in(text):
    """Every number in ``text`` (decimal, scientific, ``a \\times 10^{b}``, ``10^{b}``, percent)."""
    found = []
    for match in _NUMBER.finditer(text):
        parsed = _parse(match)
        if parsed:
            found.append((match.group(0), *parsed))
    for match in _TEX_POWER.finditer(text):
        exponent = int(match.group("texexp").replace("−", "-"))
        found.append((match.group(0), 10.0 ** exponent, 0, 1, True))
    return found


def _sentences(prose):
    """``(first line, sentence)`` for the prose: paragraphs split at sentence ends."""
    sentences, current, first = [], [], None
    for number, line in prose:
        if not line.strip() or line.lstrip().startswith(("#", "|")):
            if current:
                sentences.append((first, " ".join(current)))
            current, first = [], None
            if line.strip():
                sentences.append((number, line))
            continue
        current.append(line.strip())
        first = first or number
    if current:
        sentences.append((first, " ".join(current)))
    split = []
    for number, paragraph in sentences:
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z{$(])", paragraph):
            split.append((number, sentence))
    return split


def prose_numbers(prose):
    """Every number typed in the prose that needs a source, as :class:`Number`."""
    result = []
    for line, sentence in _sentences(prose):
        if "{cite" in sentence:
            continue
        clean = _URL.sub(" ", _ROLES_DROPPED.sub(" ", sentence))
        clean = re.sub(r"\b(?:fig|eq|ex|sec|tab)-[\w-]+", " ", clean)
        for text, value, decimals, significant, scientific in numbers_in(clean):
            percent = text.rstrip().endswith("%")
            if _trivial(value, decimals, scientific or percent):
                continue
            result.append(Number(text.strip(), value, decimals, significant, scientific, line, sentence,
                                 percent=percent))
    return result


def _trivial(value, decimals, scientific):
    if scientific or decimals:
        return value == 0.0
    return abs(value) <= SMALL or value in YEARS


def _matches(number, values):
    """Whether ``number`` is one of ``values``, as typed or rounded the way the prose shows it."""
    for value in values:
        if value == number.value or abs(value) == abs(number.value):
            return True
        if number.scientific:
            if value and _round_sig(abs(value), number.significant) == _round_sig(abs(number.value), number.significant):
                return True
        elif round(abs(value), number.decimals) == abs(number.value):
            return True
        elif abs(number.value) < 1 and round(abs(value) / 100, number.decimals) == abs(number.value):
            return True       # a percentage printed as "56%" and stated as 0.56, or the reverse
        elif round(abs(value) * 100, number.decimals) == abs(number.value):
            return True
    return False


def _round_sig(x, digits):
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(x))))


def _exact_values(text):
    return {value for _, value, *_ in numbers_in(text)}


_ENGINE = None


def engine_values():
    """Every number written in the engine's source (its constants and coefficients)."""
    global _ENGINE
    if _ENGINE is None:
        text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "src").rglob("*.py")))
        _ENGINE = _exact_values(text)
        for a, b in re.findall(r"(-?\d+)/(\d+)", text):      # fractions in tableaux: "35/384"
            _ENGINE.update({abs(float(a)), float(b)})
    return _ENGINE


def allowed(chapter):
    """The allowlist of ``chapter`` (its stem) and of every chapter (``"*"``): ``{number: reason}``."""
    if not ALLOWLIST.is_file():
        return {}
    data = yaml.safe_load(ALLOWLIST.read_text(encoding="utf-8")) or {}
    entries = {**(data.get("*") or {}), **(data.get(chapter) or {})}
    return {str(k): v for k, v in entries.items()}


def unsourced(md_path, text=None, notebook=None):
    """The numbers of the chapter ``md_path`` that nothing accounts for (see the module docstring).

    ``text`` and ``notebook`` override the chapter's text and its stored notebook's path (tests).
    """
    md_path = Path(md_path)
    text = md_path.read_text(encoding="utf-8") if text is None else text
    prose, code = split_chapter(text)
    notebook = ROOT / "notebooks" / f"{md_path.stem}.ipynb" if notebook is None else notebook
    inputs = _exact_values(code) | engine_values()
    outputs = {value for _, value, *_ in numbers_in(outputs_text(notebook))} | _exact_values(code)
    allow = allowed(md_path.stem)
    missing = []
    for number in prose_numbers(prose):
        if number.text in allow or number.value in inputs and not number.percent:
            continue
        number.computed = _matches(number, outputs)
        missing.append(number)
    return missing


def describe(path, number):
    """One line for a report: where the number is, what is wrong, and its sentence."""
    what = "a cell prints it: glue it" if number.computed else "no cell, input or citation gives it"
    return f"{path}:{number.line}: {number.text!r} ({what}) in: {number.sentence[:160]}"


def main(paths):
    bad = 0
    for path in paths:
        for number in unsourced(path):
            bad += 1
            print(describe(path, number))
    if bad:
        print(f"{bad} numbers in prose that no cell computes, no input sets and no citation covers: "
              "glue them from the cell that computes them ({glue:text}), cite them, or allowlist "
              f"them with a reason in {ALLOWLIST.relative_to(ROOT)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
