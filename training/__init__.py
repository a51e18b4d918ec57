"""Training the reranker: data (filtering, negative mining), the loop, ONNX export, the model card."""
