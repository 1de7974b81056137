"""The torch-free inference runtime: exported models (ONNX + tables) and the codec along the DAG."""
