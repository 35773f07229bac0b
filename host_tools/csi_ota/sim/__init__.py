"""The virtual ESP32-S3 from Python: flash files (flashfile) and the running simulator (runner)."""
