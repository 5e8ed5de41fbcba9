"""The FastAPI retrieval service (torch-free)."""
