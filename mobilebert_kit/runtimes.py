"""The runtime versions the phone apps ship: one constant each, read by package, verify and tests.

``android_demo/app/build.gradle`` pins the same ONNX Runtime version (a test reads both).
"""

from __future__ import annotations

ANDROID_ORT_VERSION = "1.22.0"  # com.microsoft.onnxruntime:onnxruntime-android in android_demo
