#!/bin/sh
# Build the CPU image where no registry is reachable but Debian's package mirror is (how it was
# built and checked on the development machine; see README, "Containers"):
#   1. debootstrap a minimal Debian 12 and commit it as the runtime base (no base image is pulled);
#   2. stage this checkout's release build (stage_prebuilt.sh), so no Rust image is needed;
#   3. buildah bud packaging/Containerfile with HEARTH_BUILD=prebuilt, one layer per step
#      (--layers: the models stay a layer of their own) and the docker format (keeps HEALTHCHECK);
#   4. run the image's `hearth validate`.
# Needs root, buildah and debootstrap (apt-get install buildah debootstrap). vfs storage and chroot
# isolation work inside an unprivileged container too. Prerequisites: `make models` and
# `cargo build --release --bin hearth`.
set -eu
cd "$(dirname "$0")/../.."
work=${WORK:-target/container}
base=localhost/debian-bookworm-debootstrap:latest
tag=${TAG:-localhost/hearth:cpu}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$work/rootfs/" /
  buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit --rm "$ctr" "$base"
  rm -rf "$work/rootfs"
fi

packaging/container/stage_prebuilt.sh
# MODELS_IMAGE is passed although it is the default: buildah 1.28 leaves a stage named only by an
# ARG's default value out of its stage graph and then tries to pull it as an image.
buildah bud --layers --format docker \
  --build-arg RUNTIME_IMAGE="$base" --build-arg HEARTH_BUILD=prebuilt --build-arg MODELS_IMAGE=models-from-context \
  -f packaging/Containerfile -t "$tag" .

ctr=$(buildah from "$tag")
trap 'buildah rm "$ctr" >/dev/null' EXIT
buildah run --env HEARTH__SERVER__API_KEYS=change-me-0123456789 "$ctr" -- /usr/bin/hearth validate
