"""Prometheus exporter for WhatsApp Business conversation analytics (Splashify partner API)."""

__version__ = "0.1.0"
