#!/usr/bin/env bash
# Install the full Fashion-MNIST (60,000 + 10,000, MIT) from Debian's packages for builtin:fashion_mnist.
# As root: apt-get install. Otherwise: apt-get download + dpkg-deb -x into ~/.cache/hfssl and
# print the HFSSL_FASHION_MNIST_DIR to export.
set -euo pipefail
target=/usr/share/datasets/fashion-mnist
if [ -f "$target/train-images-idx3-ubyte.gz" ]; then echo "Fashion-MNIST is in $target"; exit 0; fi
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  echo "Fashion-MNIST installed in $target"
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/hfssl/fashion-mnist-deb"
  mkdir -p "$cache" && cd "$cache"
  apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb root
  echo "export HFSSL_FASHION_MNIST_DIR=$cache/root$target"
fi
