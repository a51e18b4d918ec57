"""Measuring retrieval: datasets, metrics, runs through RagPipeline.ask, reports, benchmarks."""
