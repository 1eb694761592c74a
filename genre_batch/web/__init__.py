"""The web page and HTTP API (FastAPI, no Ray): ``genre_batch.web.app.create_app``; Ray Serve runs it in ``pipelines.serve``."""
