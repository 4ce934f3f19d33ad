"""Operations: health checks (``/healthz``) and Prometheus metrics (``/metrics``)."""
