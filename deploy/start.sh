#!/bin/sh
# Sets everything up, builds inferd and starts the daemon in the foreground on loopback with its
# default configuration (tcp://127.0.0.1:7070 and an ipc socket), serving the built-in default
# models: a small random-weight llama model in GGUF ("default") and a small random-weight
# Stable Diffusion pipeline in the diffusers layout ("default-image"), generated once by
# inferd-mkmodel into $INFERD_MODEL_DIR (default: build/models). Extra arguments go to inferd,
# e.g.
#   deploy/start.sh --log-level debug
#   deploy/start.sh -m mymodel=/path/to/real-model.gguf     (serve a real model as well)
# Stop it with Ctrl-C (it drains calls in flight).
set -eu
cd "$(dirname "$0")/.."

deploy/install-deps.sh
build=${BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dbuildtype=release -Dtests=false
fi
ninja -C "$build"

models=${INFERD_MODEL_DIR:-$build/models}
default_model="$models/default.gguf"
# A ChatML template, so that /v1/chat/completions works on the default model.
chatml='{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}'
if [ ! -f "$default_model" ]; then
  mkdir -p "$models"
  # About 30M parameters, 8-bit weights: quick to generate and to run on any machine.
  "$build/engine/tools/inferd-mkmodel" llm --out "$default_model" --dim 512 --layers 8 \
    --heads 8 --kv-heads 4 --ffn 1408 --vocab 8192 --context 2048 --dtype q8_0 --seed 1 \
    --name inferd-default --chat-template "$chatml"
fi
default_image="$models/default-image"
if [ ! -f "$default_image/model_index.json" ]; then
  mkdir -p "$models"
  # Three UNet levels (64, 128, 256 channels), 128x128 images by default: a few seconds a
  # picture on two cores.
  "$build/engine/tools/inferd-mkmodel" diffusion --out "$default_image" --size small --seed 1
fi
exec "$build/server/inferd" --model "default=$default_model" \
  --model "default-image=$default_image" "$@"
