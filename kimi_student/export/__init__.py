"""Export: ANE-friendly student -> ExportedProgram -> Core ML (and ONNX for debugging), and a numpy
executor for saved ML programs so parity can be checked off macOS."""
