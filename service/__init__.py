"""The EXTD face detection HTTP service (FastAPI, dynamic batching, Prometheus)."""
