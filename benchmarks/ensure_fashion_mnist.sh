#!/usr/bin/env bash
# Make sure Fashion-MNIST's IDX files are on disk before `make fashion-mnist`.
# Found when: --data-dir DIR is among the arguments, $FASHION_MNIST_DIR is set, or Debian's
# dataset-fashion-mnist package is installed (/usr/share/datasets/fashion-mnist). Otherwise the package is
# installed with apt when that can be done (root, apt-get present); else one line says what to do.
set -euo pipefail
DEBIAN_DIR=/usr/share/datasets/fashion-mnist
for arg in "$@"; do
    case "$arg" in --data-dir|--data-dir=*) exit 0 ;; esac
done
if [[ -n "${FASHION_MNIST_DIR:-}" ]] || [[ -f "$DEBIAN_DIR/train-images-idx3-ubyte.gz" ]]; then
    exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "Fashion-MNIST not found: installing Debian's dataset-fashion-mnist (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    [[ -f "$DEBIAN_DIR/train-images-idx3-ubyte.gz" ]] && exit 0
fi
echo "make fashion-mnist: error: Fashion-MNIST files not found; install them with 'apt-get install dataset-fashion-mnist' (as root), or pass ARGS=\"--data-dir DIR\" or set FASHION_MNIST_DIR" >&2
exit 1
