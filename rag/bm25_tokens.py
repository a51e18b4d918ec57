"""BM25's tokenizer: the terms the lexical first stage (:mod:`rag.lexical`) indexes and searches.

Latin words lowercased, English stop words dropped, Snowball-stemmed; CJK as characters + bigrams (or jieba's
words, measured and not the default). The choices were measured with ``experiments/measure_bm25.py``; the tables
are in ``docs/bm25.md``.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import Stemmer

if TYPE_CHECKING:
    import jieba

ChineseMode = Literal["bigrams", "jieba", "jieba-search", "jieba+bigrams"]

# ---- tokenizer -----------------------------------------------------------------------------------
# CJK ideographs (URO, extension A, compatibility, extensions B-F); other scripts are read as words.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_WORD = re.compile(rf"[^\W_{_CJK}]+")  # a run of letters and digits of any other script
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_CJK_BIGRAM = re.compile(rf"(?=([{_CJK}]{{2}}))")  # overlapping: every pair of adjacent ideographs

# bm25s's English list (33 words), kept here so the token stream does not change with a bm25s upgrade.
_STOPWORDS_EN = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)


@dataclass(frozen=True)
class TokenizerOptions:
    """What the tokenizer does; the defaults are the measured winners (docs/bm25.md)."""

    stem: bool = True  # Snowball English stemmer on non-CJK words
    stopwords: bool = True  # drop the 33 English stop words
    chinese: ChineseMode = "bigrams"  # CJK unigrams + bigrams, or jieba words (+ search mode / + bigrams)

    def label(self) -> str:
        return f"stem={'en' if self.stem else 'off'},stop={'en' if self.stopwords else 'off'},zh={self.chinese}"


class Tokenizer:
    """Text → BM25 terms, the same function for chunks and queries; the order of terms is not kept
    (BM25 counts them): words first, then CJK characters, then CJK bigrams.

    Runs of letters and digits other than CJK ideographs are lowercased words (stop words dropped,
    stemmed); runs of CJK ideographs become characters and bigrams (or jieba words). Each script is
    found by its own pattern in the same text, so mixed text such as ``"e-bike电池充电"`` needs no
    language detection, and a bigram never spans punctuation or a Latin word. Regex scans over the
    whole text rather than a Python loop per run: tokenizing is most of a rebuild's time.

    Safe to call from several threads: jieba, when chosen, initialises once under a lock, and each
    thread gets its own stemmer (a PyStemmer object must not be used by two threads at once).
    """

    def __init__(self, options: TokenizerOptions = TokenizerOptions()) -> None:
        self.options = options
        self._jieba: jieba.Tokenizer | None = None
        self._jieba_lock = threading.Lock()
        self._local = threading.local()

    def __call__(self, text: str) -> list[str]:
        text = text.lower()
        tokens = self._words(_WORD.findall(text))
        if self.options.chinese in ("bigrams", "jieba+bigrams"):
            tokens += _CJK_CHAR.findall(text)
            tokens += _CJK_BIGRAM.findall(text)
        if self.options.chinese != "bigrams":
            for run in _CJK_RUN.findall(text):
                tokens += self._jieba_words(run)
        return tokens

    def _words(self, words: list[str]) -> list[str]:
        if self.options.stopwords:
            words = [w for w in words if w not in _STOPWORDS_EN]
        if self.options.stem:
            return self._stemmer().stemWords(words)
        return words

    def _jieba_words(self, run: str) -> list[str]:
        segmenter = self._segmenter()
        return segmenter.lcut_for_search(run) if self.options.chinese == "jieba-search" else segmenter.lcut(run)

    def _stemmer(self) -> Stemmer.Stemmer:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            # maxCacheSize 0: PyStemmer's own cache makes stemWords twice as slow on chunk text.
            stemmer = self._local.stemmer = Stemmer.Stemmer("english", 0)
        return stemmer

    def _segmenter(self) -> jieba.Tokenizer:
        """jieba with its packaged dictionary, loaded on the first Chinese text (about 1 s), once."""
        if self._jieba is None:
            with self._jieba_lock:
                if self._jieba is None:
                    import jieba

                    jieba.setLogLevel(logging.WARNING)  # it prints "Building prefix dict..." to stderr
                    segmenter = jieba.Tokenizer()
                    segmenter.initialize()
                    self._jieba = segmenter
        return self._jieba


DEFAULT_TOKENIZER_OPTIONS = TokenizerOptions()
_TOKENIZER = Tokenizer(DEFAULT_TOKENIZER_OPTIONS)

# Part of every manifest: an index whose tokens came from another tokenizer is rebuilt, never used.
# Bump the leading revision whenever the code above changes what tokens come out; PyStemmer's
# version is in it because new Snowball rules change stems (add jieba's if the default uses it).
TOKENIZER_VERSION = f"1:{DEFAULT_TOKENIZER_OPTIONS.label()}:pystemmer-{Stemmer.version()}"


def tokenize(text: str) -> list[str]:
    """The BM25 terms of ``text``: lowercased, stemmed words and digits without English stop words;
    CJK characters and their bigrams."""
    return _TOKENIZER(text)
