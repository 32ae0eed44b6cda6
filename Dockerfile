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
CMD ["threadview-api"]
