"""HTTP pieces both FastAPI apps use, the receiver and the management API: one error
format, request ids, health probes. Imported only by those apps (the worker image has no
FastAPI)."""
