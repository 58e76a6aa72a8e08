"""Build the book's editions with Jupyter Book's own Sphinx driver, from the stored outputs.

The English edition goes to ``_build/html`` and the Korean one to ``_build/html/ko``, page for page
at the same relative paths; the Korean edition is the English sources with the translations of
``locale/ko/LC_MESSAGES`` applied (Sphinx's gettext machinery: a sentence without an up-to-date
translation shows in English). Both read the same ``_config.yml`` and the same outputs (MyST-NB's
cache, filled by ``tools/stored_outputs.py seed``): nothing is executed. The two editions are built
in two processes at once.

Usage:
    python tools/build_book.py [--strict] [--edition en|ko] [--gettext]

``--strict`` turns every warning into an error and reports broken references (``-W -n
--keep-going``), and rebuilds every page from scratch. ``--gettext`` writes the message catalogue
templates (``.pot``) of the English edition to ``_build/gettext``, for ``make translations``.
"""

import argparse
import multiprocessing
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
EDITIONS = {"en": HTML, "ko": HTML / "ko"}
"""Each edition's language and where a reader finds it."""
BUILT = {"en": HTML, "ko": ROOT / "_build" / "ko" / "html"}
"""Where each edition is built. MyST-NB writes a page's files next to its output folder, so the
Korean edition is built apart (its files would otherwise land in the English site) and copied in."""


def build(language, strict, builder="html", outdir=None):
    """Build one edition; returns Sphinx's status code (0 when it succeeded)."""
    from jupyter_book.sphinx import build_sphinx

    outdir = Path(outdir or BUILT[language])
    overrides = {"language": language, "external_toc_path": str(ROOT / "_toc.yml"),
                 "latex_individualpages": False}
    if strict:
        overrides["nitpicky"] = True
    result = build_sphinx(
        str(ROOT), str(outdir), use_external_toc=True, noconfig=True,
        path_config=str(ROOT / "_config.yml"), confoverrides=overrides, builder=builder,
        doctreedir=str(ROOT / "_build" / f".doctrees-{builder}-{language}"),
        warningiserror=strict, keep_going=strict, freshenv=strict, force_all=strict, quiet=True,
    )
    return result if isinstance(result, int) else 1


def _build_edition(args):
    return build(*args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="warnings are errors (-W -n --keep-going)")
    parser.add_argument("--edition", choices=sorted(EDITIONS), help="build one edition only")
    parser.add_argument("--gettext", action="store_true", help="write .pot templates to _build/gettext")
    options = parser.parse_args(argv)
    if options.gettext:
        return build("en", options.strict, builder="gettext", outdir=ROOT / "_build" / "gettext")
    languages = [options.edition] if options.edition else list(EDITIONS)
    jobs = [(language, options.strict) for language in languages]
    if len(jobs) == 1:
        codes = [_build_edition(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            codes = pool.map(_build_edition, jobs)
    for language, code in zip(languages, codes):
        if code == 0 and BUILT[language] != EDITIONS[language]:
            shutil.rmtree(EDITIONS[language], ignore_errors=True)
            shutil.copytree(BUILT[language], EDITIONS[language])
        where = EDITIONS[language].relative_to(ROOT)
        print(f"{language}: {'built in ' + str(where) if code == 0 else 'FAILED (see the messages above)'}")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
