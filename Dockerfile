# One image for both entry points: threadview-projector and threadview-api.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY consumers ./consumers
COPY api ./api
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
# the API's readiness (the projector's service overrides it with its own port, 8001)
HEALTHCHECK --interval=10s --timeout=5s --retries=6 CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('THREADVIEW_API_PORT', '8000')}/readyz\", timeout=3)"]
CMD ["threadview-api"]
