"""tracehound: find performance problems in Flask apps from OpenTelemetry traces."""

__version__ = "0.1.0"
