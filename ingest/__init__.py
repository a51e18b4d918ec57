"""rerank-rag's write path: loaders (bytes → pages), chunking (the one splitter recipe), pipeline (pages →
chunks → embeddings → Chroma, one document at a time, under a single-writer lock)."""
