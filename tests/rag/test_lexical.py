"""The BM25 first stage: the tokenizer, the index, and an index derived from a real embedded Chroma that
follows ingest and delete, survives a killed build, rebuilds when stale and never indexes uncommitted chunks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor, SourceFile
from rag import lexical
from rag.lexical import (
    CURRENT,
    IndexUnusable,
    LexicalIndex,
    LexicalIndexes,
    Tokenizer,
    TokenizerOptions,
    index_root,
    lexical_search,
    tokenize,
)
from rag.settings import Settings
from rag.store import KnowledgeBase
from tests.helpers import REPO

BATTERY = b"The battery of the Kestrel e-bike charges fully in four hours."
RETURNS = b"Returns are accepted within thirty days of delivery, with the receipt."
CHINESE = "电池充电需要四个小时。".encode()


# ---- the tokenizer -------------------------------------------------------------------------------
def test_english_words_are_lowercased_stemmed_and_stop_words_dropped() -> None:
    assert tokenize("The Batteries are CHARGING in 4.5 hours!") == ["batteri", "charg", "4", "5", "hour"]
    # Documents and queries go through the same function, so inflections meet.
    assert set(tokenize("How long does a battery charge?")) >= {"batteri", "charg"}


def test_chinese_becomes_characters_and_bigrams() -> None:
    assert tokenize("电池充电") == ["电", "池", "充", "电", "电池", "池充", "充电"]


def test_mixed_text_needs_no_language_detection() -> None:
    # The order of terms is not kept (BM25 counts them): words, then characters, then bigrams.
    assert tokenize("Kestrel电池: 80%, e-bike") == ["kestrel", "80", "e", "bike", "电", "池", "电池"]
    assert "池充" not in tokenize("电池。充电") and "电池" not in tokenize("电x池")  # bigrams stay in a run
    assert tokenize("") == [] and tokenize("。，!?") == []


def test_jieba_option_segments_words_and_starts_silently(capfd: pytest.CaptureFixture[str]) -> None:
    segment = Tokenizer(TokenizerOptions(stem=False, stopwords=False, chinese="jieba"))
    assert segment("The batteries 电池充电需要多久") == ["the", "batteries", "电池", "充电", "需要", "多久"]
    assert "Prefix dict" not in capfd.readouterr().err  # jieba logs its dictionary loading unless silenced


def test_the_tokenizer_gives_the_same_tokens_from_many_threads() -> None:
    segment = Tokenizer(TokenizerOptions(chinese="jieba+bigrams"))
    texts = [f"Charging battery {i} takes hours 北京大学的学生{i}在充电" for i in range(200)]
    expected = [segment(text) for text in texts]
    results: dict[int, list[list[str]]] = {}

    def work(n: int) -> None:
        results[n] = [segment(text) for text in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())


# ---- the index -----------------------------------------------------------------------------------
def _index() -> LexicalIndex:
    return LexicalIndex.build(
        ["a", "b", "c"],
        ["The battery charges in four hours.", "Returns within thirty days.", "Battery, battery: spare batteries."],
        collection="demo",
        fingerprint="f1",
    )


def test_search_ranks_by_bm25_and_drops_chunks_without_a_query_term() -> None:
    index = _index()
    hits = index.search("battery charging", 10)
    assert [chunk_id for chunk_id, _ in hits] == ["a", "c"]  # "charg" only in a; b shares no term
    assert hits[0][1] > hits[1][1] > 0
    assert [chunk_id for chunk_id, _ in index.search("batteries", 1)] == ["c"]
    assert index.search("zeppelin", 5) == []
    assert index.search("the in", 5) == []  # stop words only
    assert index.search("battery", 0) == []
    assert index.manifest["chunks"] == 3 and index.manifest["fingerprint"] == "f1"
    assert index.manifest["tokenizer_version"] == lexical.TOKENIZER_VERSION


def test_a_search_kept_to_some_documents_finds_their_best_however_far_down(tmp_path: Path) -> None:
    """The index knows each chunk's document, so a search kept to one finds its chunks among all the collection's,
    not among the best few of the whole: 60 chunks of one manual say "battery" more than the other's one does."""
    ids, texts, identities = [], [], []
    for n in range(60):
        ids.append(f"loud{n}")
        texts.append("Battery, battery, battery: the battery again.")
        identities.append(("loud.txt", "Loud manual", texts[-1]))
    ids.append("quiet0")
    texts.append("The remote takes one battery and a charger.")
    identities.append(("quiet.txt", "Quiet manual", texts[-1]))
    index = LexicalIndex.build(ids, texts, identities=identities)
    assert index.filters and "quiet0" not in dict(index.search("battery", 20))
    assert index.search("battery", 20, sources={"quiet.txt"})[0][0] == "quiet0"
    assert index.search("battery", 20, sources={"quiet.txt"})[1:] == []
    assert index.search("battery", 5, sources={"nowhere.txt"}) == []
    index.save(tmp_path / "idx")
    loaded = LexicalIndex.load(tmp_path / "idx")
    assert loaded.filters and loaded.search("battery", 3, sources={"quiet.txt"}) == index.search(
        "battery", 3, sources={"quiet.txt"})
    assert not _index().filters  # built without identities: lexical_search over-reads and drops instead
    with pytest.raises(ValueError, match="documents"):
        _index().search("battery", 3, sources={"quiet.txt"})


def test_names_held_are_the_question_names_the_whole_collections_words_hold() -> None:
    index = _index()
    assert index.names_held(["battery", "microsoft"]) == (0.5, ["microsoft"])  # no passage prints it
    assert index.names_held(["spare batteries"]) == (1.0, [])  # every word of a name, stemmed as BM25 stems it
    assert index.names_held(["spare kestrel"]) == (0.0, ["spare kestrel"])
    assert index.names_held([]) is None  # no names: nothing to tell


def test_the_matrix_is_the_one_bm25s_builds() -> None:
    import bm25s

    texts = [
        "The battery charges in four hours; a spare battery charges in five.",
        "Returns within thirty days. Returns need the receipt, and the battery must be charged.",
        "电池充电需要四个小时，备用电池需要五个小时。",
        "Motor, motor, motor: the motor is waterproof. 电机防水。",
        "Nothing in common here at all",
        "",
    ]
    ours = LexicalIndex.build([str(i) for i in range(len(texts))], texts).retriever
    reference = bm25s.BM25(k1=lexical.K1, b=lexical.B, method=lexical.METHOD)
    reference.index([tokenize(text) for text in texts], show_progress=False)
    for query in ("battery charges", "returns receipt battery", "电池充电", "waterproof motor 防水", "common"):
        terms = tokenize(query)
        np.testing.assert_allclose(ours.get_scores(terms), reference.get_scores(terms), rtol=1e-5)


def test_save_and_load_memory_map_the_matrix_and_keep_the_chunk_ids(tmp_path: Path) -> None:
    index = _index()
    index.save(tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["collection"] == "demo"
    loaded = LexicalIndex.load(tmp_path / "idx")
    assert isinstance(loaded.retriever.scores["data"], np.memmap)
    assert loaded.chunk_ids == ["a", "b", "c"] and loaded.manifest["chunks"] == 3
    assert loaded.search("battery charging", 10) == index.search("battery charging", 10)
    with pytest.raises(FileExistsError):
        index.save(tmp_path / "idx")  # a build always writes a fresh folder


def test_an_empty_index_saves_loads_and_finds_nothing(tmp_path: Path) -> None:
    for ids, texts in (([], []), (["x"], ["?!"])):
        folder = tmp_path / f"idx{len(ids)}"
        LexicalIndex.build(ids, texts).save(folder)
        loaded = LexicalIndex.load(folder)
        assert len(loaded) == len(ids) and loaded.search("anything", 5) == []


def test_a_folder_without_manifest_or_with_a_wrong_one_is_unusable(tmp_path: Path) -> None:
    _index().save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps({**manifest, "chunks": 4}))
    with pytest.raises(IndexUnusable):
        LexicalIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").unlink()
    with pytest.raises(IndexUnusable):
        LexicalIndex.load(tmp_path / "idx")


# ---- derived from the store ----------------------------------------------------------------------
def _ids(hits: list[tuple[str, float]]) -> list[str]:
    return [chunk_id for chunk_id, _ in hits]


def _folders(settings: Settings) -> set[str]:
    return {p.name for p in index_root(settings.data_dir, settings.collection).glob("idx-*")}


def _current(settings: Settings) -> str:
    return (index_root(settings.data_dir, settings.collection) / CURRENT).read_text().strip()


def _no_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("built an index where a matching one was there to load")

    monkeypatch.setattr(LexicalIndex, "build", classmethod(refuse))


def test_the_index_follows_ingest_reingest_and_delete(settings: Settings) -> None:
    ingestor = Ingestor(settings)
    results = ingestor.ingest([SourceFile("a.txt", data=BATTERY), SourceFile("b.txt", data=RETURNS),
                               SourceFile("zh.txt", data=CHINESE)])
    a, b, zh = (r.doc_id for r in results)
    kb = KnowledgeBase(settings)
    indexes = LexicalIndexes()

    index = indexes.get(kb, settings.data_dir)
    assert len(index) == 3 and index.manifest["fingerprint"] == kb.fingerprint()
    assert _ids(index.search("how long to charge the battery", 5)) == [f"{a}:{_sha(kb, a)}:00000"]
    assert _ids(index.search("充电多久", 5)) == [f"{zh}:{_sha(kb, zh)}:00000"]
    assert indexes.get(kb, settings.data_dir) is index  # nothing changed: the loaded index
    assert _folders(settings) == {_current(settings)}

    # Changed bytes: the old version's terms are gone, the new one's are found.
    ingestor.ingest([SourceFile("a.txt", data=b"The motor is waterproof to IPX7.")])
    index = indexes.get(kb, settings.data_dir)
    assert index.search("battery", 5) == []
    assert _ids(index.search("waterproof motor", 5)) == [f"{a}:{_sha(kb, a)}:00000"]

    kb.delete_document(b)
    index = indexes.get(kb, settings.data_dir)
    assert index.search("returns receipt", 5) == [] and len(index) == 2
    assert _folders(settings) == {_current(settings)}  # replaced folders are removed

    # The chunks behind the hits, with their BM25 scores.
    (chunk,) = lexical_search(kb, settings.data_dir, "waterproof", 5)
    assert chunk.source == "a.txt" and chunk.text == "The motor is waterproof to IPX7." and chunk.score > 0


def _sha(kb: KnowledgeBase, doc_id: str) -> str:
    return kb.document(doc_id).content_sha256[:12]


def test_another_process_loads_the_index_already_built_instead_of_building(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(settings).ingest([SourceFile("a.txt", data=BATTERY)])
    kb = KnowledgeBase(settings)
    built = LexicalIndexes().get(kb, settings.data_dir)
    _no_builds(monkeypatch)
    loaded = LexicalIndexes().get(kb, settings.data_dir)  # a fresh cache: what another process sees
    assert loaded.folder.name == _current(settings) and loaded.manifest == built.manifest
    assert loaded.search("battery", 5) == built.search("battery", 5)


KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import rag.lexical as lexical
    from rag.settings import Settings
    from rag.store import KnowledgeBase

    def save_half(self, folder):  # the arrays are written; chunk ids and manifest never come
        Path(folder).mkdir(parents=True)
        self.retriever.save(str(folder), show_progress=False)
        time.sleep(600)

    lexical.LexicalIndex.save = save_half
    settings = Settings(data_dir=sys.argv[1])
    lexical.rebuild(KnowledgeBase(settings), settings.data_dir)
    """
)


def test_a_build_killed_midway_leaves_the_previous_index_in_use(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(settings).ingest([SourceFile("a.txt", data=BATTERY), SourceFile("b.txt", data=RETURNS)])
    kb = KnowledgeBase(settings)
    before = LexicalIndexes().get(kb, settings.data_dir)
    previous = _current(settings)

    build = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(settings.data_dir)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while not any(_folders(settings) - {previous}):
            assert build.poll() is None, build.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the build never started writing"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
    (orphan,) = _folders(settings) - {previous}
    assert not (index_root(settings.data_dir, "default") / orphan / "manifest.json").exists()
    assert _current(settings) == previous

    with monkeypatch.context() as patch:
        _no_builds(patch)
        after = LexicalIndexes().get(kb, settings.data_dir)  # the killed build's lock is gone with it
    assert after.folder.name == previous and after.search("battery", 5) == before.search("battery", 5)

    # The next build sweeps the orphan.
    Ingestor(settings).ingest([SourceFile("c.txt", data=b"Spare batteries ship in a week.")])
    index = LexicalIndexes().get(kb, settings.data_dir)
    assert _folders(settings) == {_current(settings)} and _current(settings) not in {previous, orphan}
    assert len(index) == 3


def test_a_stale_manifest_triggers_a_rebuild(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    Ingestor(settings).ingest([SourceFile("a.txt", data=BATTERY)])
    kb = KnowledgeBase(settings)
    indexes = LexicalIndexes()
    first = indexes.get(kb, settings.data_dir).folder.name

    monkeypatch.setattr(lexical, "TOKENIZER_VERSION", "0:another tokenizer")
    index = LexicalIndexes().get(kb, settings.data_dir)
    assert index.manifest["tokenizer_version"] == "0:another tokenizer"
    assert _folders(settings) == {_current(settings)} and _current(settings) != first
    with monkeypatch.context() as patch:  # the first cache notices, and loads what was built
        _no_builds(patch)
        assert indexes.get(kb, settings.data_dir).folder.name == _current(settings)

    # A manifest that disagrees with the store's chunk count, or with its own chunk ids, is not used.
    for field, wrong in (("store_chunks", 2), ("chunks", 2)):
        folder = index_root(settings.data_dir, "default") / _current(settings)
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, field: wrong}))
        index = LexicalIndexes().get(kb, settings.data_dir)
        assert index.folder.name != folder.name and index.manifest[field] == 1
        assert _ids(index.search("battery", 5))

    # CURRENT naming a folder that is not there.
    (index_root(settings.data_dir, "default") / CURRENT).write_text("idx-" + "0" * 32)
    assert LexicalIndexes().get(kb, settings.data_dir).folder.name != "idx-" + "0" * 32


class _Refused(Exception):
    pass


def test_uncommitted_chunks_are_not_indexed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ingestor = Ingestor(settings)
    ingestor.ingest([SourceFile("a.txt", data=BATTERY)])

    def no_commit(**_) -> None:
        raise _Refused  # dies after writing the chunks, before the registry record (the commit mark)

    monkeypatch.setattr(ingestor.kb.registry, "upsert", no_commit)
    for file in (SourceFile("ghost.txt", data=b"A zeppelin floats over the harbour."),
                 SourceFile("a.txt", data=b"The battery now charges in one dirigible hour.")):
        with pytest.raises(_Refused):
            ingestor.ingest([file])

    kb = KnowledgeBase(settings)
    assert kb.count() == 3  # the committed chunk and two uncommitted ones are in Chroma
    index = LexicalIndexes().get(kb, settings.data_dir)
    assert len(index) == 1 and index.manifest["store_chunks"] == 1
    assert index.search("zeppelin", 5) == [] and index.search("dirigible", 5) == []
    assert _ids(index.search("battery four hours", 5)) == [c.chunk_id for c in kb.committed_chunks()]
    assert [c.source for c in kb.committed_chunks()] == ["a.txt"]


def test_chunks_are_read_in_pages_beyond_the_page_size(settings: Settings) -> None:
    settings = settings.model_copy(update={"chunk_size": 32, "chunk_overlap": 0})
    sentences = [f"Sentence number {i} of the manual talks about part {i * 7} and its care." for i in range(40)]
    results = Ingestor(settings).ingest(
        [SourceFile(f"doc{n}.txt", data=" ".join(sentences[n::3]).encode()) for n in range(3)]
    )
    total = sum(r.chunks for r in results)
    assert total > 10

    kb = KnowledgeBase(settings)
    gets = _CountingGets(kb.chunks)
    kb.chunks = gets
    chunks = list(kb.committed_chunks(page_size=3))
    assert len(chunks) == len({c.chunk_id for c in chunks}) == total
    assert len(gets.limits) >= total // 3 and set(gets.limits) == {3}
    assert {c.chunk_id for c in chunks} == set(gets.collection.get(include=[])["ids"])
    assert {c.source for c in chunks} == {"doc0.txt", "doc1.txt", "doc2.txt"}

    wanted = [chunks[5].chunk_id, "no-such-chunk", chunks[0].chunk_id, chunks[9].chunk_id]
    got = kb.get_chunks(wanted, page_size=2)
    assert [c.chunk_id for c in got] == [wanted[0], wanted[2], wanted[3]]
    assert [c.text for c in got] == [chunks[5].text, chunks[0].text, chunks[9].text]

    index = LexicalIndexes(page_size=3).rebuild(kb, settings.data_dir)
    assert len(index) == total and index.manifest["store_chunks"] == total
    assert _ids(index.search("part 273", 1)) == [c.chunk_id for c in chunks if "part 273 " in c.text]


class _CountingGets:
    """A Chroma collection that records the page size of every get()."""

    def __init__(self, collection) -> None:
        self.collection = collection
        self.limits: list[int | None] = []

    def get(self, **kwargs):
        self.limits.append(kwargs.get("limit"))
        return self.collection.get(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self.collection, name)


def test_fingerprint_follows_the_committed_versions_only(settings: Settings) -> None:
    ingestor = Ingestor(settings)
    kb = KnowledgeBase(settings)
    empty = kb.fingerprint()
    (a,) = ingestor.ingest([SourceFile("a.txt", data=BATTERY)])
    one = kb.fingerprint()
    ingestor.ingest([SourceFile("a.txt", data=BATTERY)])  # unchanged: skipped
    assert kb.fingerprint() == one != empty
    ingestor.ingest([SourceFile("a.txt", data=RETURNS)])
    changed = kb.fingerprint()
    assert changed not in {one, empty}
    kb.delete_document(a.doc_id)
    assert kb.fingerprint() == empty
    assert KnowledgeBase(settings, "other").fingerprint() == empty  # per collection


def test_recheck_s_holds_a_check_and_rebuilds_count_as_checks(settings: Settings) -> None:
    results = Ingestor(settings).ingest([SourceFile("a.txt", data=BATTERY), SourceFile("b.txt", data=RETURNS)])
    kb = KnowledgeBase(settings)
    lazy, exact = LexicalIndexes(recheck_s=3600), LexicalIndexes()
    before = lazy.get(kb, settings.data_dir)
    assert exact.get(kb, settings.data_dir).manifest == before.manifest

    kb.delete_document(results[1].doc_id)  # as another process would: no rebuild here
    assert lazy.get(kb, settings.data_dir) is before  # within recheck_s: not re-read
    assert _ids(before.search("returns", 5))
    assert kb.get_chunks(_ids(before.search("returns", 5))) == []  # its hits of the deleted version are dropped
    assert exact.get(kb, settings.data_dir).search("returns", 5) == []
    assert lazy.rebuild(kb, settings.data_dir).search("returns", 5) == []
    assert lazy.get(kb, settings.data_dir).manifest["fingerprint"] == kb.fingerprint()


def test_two_threads_on_a_stale_index_build_it_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    Ingestor(settings).ingest([SourceFile("a.txt", data=BATTERY)])  # builds an index as it ends
    kb = KnowledgeBase(settings)
    monkeypatch.setattr(lexical, "TOKENIZER_VERSION", "0:another tokenizer")  # which is now stale
    original = LexicalIndex.build.__func__
    builds: list[int] = []

    def slow_build(cls, *args, **kwargs):
        builds.append(1)
        time.sleep(0.5)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LexicalIndex, "build", classmethod(slow_build))
    indexes = LexicalIndexes()
    got: list[LexicalIndex] = []
    threads = [threading.Thread(target=lambda: got.append(indexes.get(kb, settings.data_dir))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(got) == 3 and got[0] is got[1] is got[2]


def test_the_per_query_check_reads_the_registry_only_when_the_generation_moved(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    Ingestor(settings).ingest([SourceFile("a.txt", data=BATTERY)])
    kb = KnowledgeBase(settings)
    indexes = LexicalIndexes()
    indexes.get(kb, settings.data_dir)
    reads = []
    real_read = lexical.StoreState.read
    monkeypatch.setattr(lexical.StoreState, "read", classmethod(lambda cls, kb: reads.append(1) or real_read(kb)))
    for _ in range(3):
        indexes.get(kb, settings.data_dir)
    assert reads == []  # nothing committed: one read by id per query, no registry scan
    generation = kb.generation()
    Ingestor(settings).ingest([SourceFile("b.txt", data=b"Spare batteries ship within a week.")])
    assert kb.generation() != generation
    assert len(indexes.get(kb, settings.data_dir)) == 2 and reads  # the commit moved it: checked, rebuilt
