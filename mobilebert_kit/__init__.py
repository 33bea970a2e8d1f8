"""mobilebert_kit: fine-tune, distill, compress, export, verify and package BERT text classifiers for phones."""

__version__ = "0.2.0"
