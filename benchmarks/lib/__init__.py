"""What the benchmark scripts share: timing in a chosen onnxruntime (``ort_timing`` and its standalone
worker), result files (``results_io``), seeded inputs (``inputs``), the peer baselines (``baselines``) and
paired statistics (``stats``). Scripts import from here and from mobilebert_kit, never from each other."""
