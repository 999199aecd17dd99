#!/bin/sh
# Build the CPU or the CUDA image where no registry is reachable but Debian's package mirror is (how
# both were built and checked on the development machine; see README, "Containers"):
#   1. debootstrap a minimal Debian 12 and commit it as the runtime base (no base image is pulled);
#   2. stage this checkout's release build (stage_prebuilt.sh), so no Rust image is needed, and for
#      the CUDA image `make cuda`'s backend with NVIDIA's pinned CUDA 13 runtime wheels
#      (stage_cuda.sh), so no CUDA image is needed either;
#   3. buildah bud packaging/Containerfile (or Containerfile.cuda) with the prebuilt stages, one layer
#      per step (--layers: the models stay a layer of their own) and the docker format (keeps
#      HEALTHCHECK);
#   4. run the image's `hearth validate`.
#
#   packaging/container/build_offline.sh [cpu|cuda]      (default cpu; TAG overrides the image name)
#
# Needs root, buildah and debootstrap (apt-get install buildah debootstrap). vfs storage and chroot
# isolation work inside an unprivileged container too. Prerequisites: `make models` and
# `cargo build --release --bin hearth`, and for cuda `make cuda`.
set -eu
cd "$(dirname "$0")/../.."
flavor=${1:-cpu}
work=${WORK:-target/container}
base=localhost/debian-bookworm-debootstrap:latest
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
# Every stage-naming ARG is passed although some are defaults: buildah 1.28 leaves a stage named only
# by an ARG's default value out of its stage graph and then tries to pull it as an image.
case $flavor in
  cpu)
    tag=${TAG:-localhost/hearth:cpu}
    buildah bud --layers --format docker \
      --build-arg RUNTIME_IMAGE="$base" --build-arg HEARTH_BUILD=prebuilt --build-arg MODELS_IMAGE=models-from-context \
      -f packaging/Containerfile -t "$tag" . ;;
  cuda)
    tag=${TAG:-localhost/hearth:cuda}
    packaging/container/stage_cuda.sh
    buildah bud --layers --format docker \
      --build-arg RUNTIME_IMAGE="$base" --build-arg HEARTH_BUILD=prebuilt --build-arg CUDA_BUILD=cuda-prebuilt \
      --build-arg CUDA_RUNTIME_PACKAGES= --build-arg MODELS_IMAGE=models-from-context \
      -f packaging/Containerfile.cuda -t "$tag" . ;;
  *) echo "usage: build_offline.sh [cpu|cuda]" >&2; exit 2 ;;
esac

ctr=$(buildah from "$tag")
trap 'buildah rm "$ctr" >/dev/null' EXIT
buildah run --env HEARTH__SERVER__API_KEYS=change-me-0123456789 "$ctr" -- /usr/bin/hearth validate
