"""csi-ota: safe over-the-air updates for ESP32-S3 Wi-Fi CSI sensor fleets."""

__version__ = "0.1.0"
