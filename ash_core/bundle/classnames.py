"""Readable class names: a bundle whose classes are WordNet ids (Tiny-ImageNet's
``n01443537``) is shown with the first synonym of each id in the data's ``words.txt``
(``goldfish``), found beside the ID split's images under the data root. The bundle and
its feature files are not changed: the names are for display only."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

WNID = re.compile(r"n\d{8}")
WORDS_FILE = "words.txt"


def is_wordnet(classes: Sequence[str]) -> bool:
    return bool(classes) and all(WNID.fullmatch(str(c)) for c in classes)


def wordnet_names(classes: Sequence[str], words: Path) -> list[str]:
    """Each WordNet id's first synonym in ``words`` (``wnid<TAB>syn1, syn2``); an id the
    file lacks keeps its id."""
    wanted = set(map(str, classes))
    names: dict[str, str] = {}
    with open(words, encoding="utf-8") as fh:
        for line in fh:
            wnid, _, synonyms = line.rstrip("\n").partition("\t")
            if wnid in wanted:
                names[wnid] = synonyms.split(",")[0].strip() or wnid
    return [names.get(str(c), str(c)) for c in classes]


def find_words(data_root: str | Path | None, data_paths: Sequence[str]) -> Path | None:
    """The first ``words.txt`` in a split's data directory or one of its parents, up to
    ``data_root`` (never above it); None when there is none."""
    if not data_root:
        return None
    root = Path(data_root).resolve()
    for rel in data_paths:
        here = (root / rel).resolve()
        if not here.is_relative_to(root):
            continue
        while True:
            if (here / WORDS_FILE).is_file():
                return here / WORDS_FILE
            if here == root:
                break
            here = here.parent
    return None


def readable_classes(classes: Sequence[str], data_root: str | Path | None,
                     data_paths: Sequence[str]) -> tuple[list[str], str | None]:
    """(names to show, the words file used): WordNet ids mapped through ``words.txt`` when
    one is found under ``data_root``, else the classes as they are."""
    names = [str(c) for c in classes]
    if not is_wordnet(names):
        return names, None
    words = find_words(data_root, data_paths)
    if words is None:
        return names, None
    return wordnet_names(names, words), str(words)
