"""`csi-ota fleet`: simulated ESP32-S3 CSI sensors speaking the real device protocol (docs/rollout.md)."""
