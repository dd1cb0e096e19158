#!/usr/bin/env bash
# Prepare what a lent GPU machine lacks, before its device time starts: Ray and the packages Ray needs there,
# for its Python 3.12, as one tar.xz of a site-packages folder (.devray/site.tar.xz), and the CIFAR-10 subset
# (.devdata/cifar-10-subset). Both folders are ignored by git (.git/info/exclude) and travel with `carry`.
#
#   scripts/pack_device_site.sh [DATA_DIR]      # DATA_DIR defaults to ../shared/data/cifar-10-subset
#
# Why a tar.xz: a device call carries at most 64 MiB, and Ray's wheel alone is 79 MB. Without ray/jars (the Java
# workers, which Python trials never use) and compressed with xz, Ray and its extras come to about 35 MB.
# The machine's image already has the rest (torch, pandas, pyarrow, numpy, protobuf, requests, ...; see the
# device tool's KINDS.md), so only these travel. Then, in the device call:
#
#   STEPS="search_efficiency search_efficiency_grace3" RAY_SITE_TAR=.devray/site.tar.xz \
#       benchmarks/gpu_session.sh "$OUT" .devdata/cifar-10-subset        # with carry [".devray", ".devdata"]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/cifar-10-subset}
[ -d "$data" ] || { echo "error: no data folder at $data (pass the CIFAR-10 subset's path)" >&2; exit 2; }

# Pinned to the versions this project is tested with; the device runs CPython 3.12 on x86-64.
packages=(
    ray==2.60.0
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    tensorboardX==2.6.5
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$work/wheels" "${packages[@]}"
mkdir -p "$work/site"
for wheel in "$work"/wheels/*.whl; do
    unzip -q -o "$wheel" -d "$work/site"  # unzip keeps the exec bits of Ray's raylet and gcs_server; zipfile does not
done
rm -rf "$work/site/ray/jars"
mkdir -p .devray .devdata
tar -C "$work/site" -cf - . | xz -T0 -6 >.devray/site.tar.xz
rm -rf .devdata/cifar-10-subset && cp -r "$data" .devdata/cifar-10-subset
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for path in /.devray/ /.devdata/; do
    grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >>"$exclude"
done
du -sh .devray/site.tar.xz .devdata/cifar-10-subset
