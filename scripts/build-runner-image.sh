#!/usr/bin/env bash
# Build the job runner image from Debian packages, without any container registry.
#
#   scripts/build-runner-image.sh [--force]
#
# debootstrap writes a minimal Debian root file system (python3, pip, venv, CA certificates,
# tini) and `docker import` turns it into an image. The image carries a label with a hash of
# this recipe: an existing image with the same hash is reused (the script is idempotent), a
# changed recipe rebuilds it, and --force (or FORCE=1) always rebuilds.
#
# Environment: COMMUNIPUTE_RUNNER_IMAGE (default communipute/runner:latest),
# RUNNER_SUITE (default bookworm), RUNNER_MIRROR (default: the first Debian mirror that apt
# uses on this machine, else http://deb.debian.org/debian).
set -euo pipefail

IMAGE="${COMMUNIPUTE_RUNNER_IMAGE:-communipute/runner:latest}"
SUITE="${RUNNER_SUITE:-bookworm}"
PACKAGES="python3,python3-pip,python3-venv,ca-certificates,tini"
FORCE="${FORCE:-0}"
[[ "${1:-}" == "--force" ]] && FORCE=1

apt_mirror() {
  local found
  found="$(grep -hsoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
    | grep -oE 'https?://[^ ]+' | head -n1 || true)"
  echo "${found:-http://deb.debian.org/debian}"
}
MIRROR="${RUNNER_MIRROR:-$(apt_mirror)}"

# The recipe: this script plus the inputs that change what it builds. The mirror is left
# out on purpose: any mirror of the same suite serves the same packages.
RECIPE_HASH="$( { cat "$0"; echo "$SUITE $PACKAGES"; } | sha256sum | cut -c1-16)"

current="$(docker image inspect -f '{{ index .Config.Labels "communipute.recipe" }}' "$IMAGE" \
  2>/dev/null || true)"
if [[ "$FORCE" != 1 && "$current" == "$RECIPE_HASH" ]]; then
  echo "runner image $IMAGE is up to date (recipe $RECIPE_HASH)"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  echo "debootstrap is missing: apt-get install debootstrap" >&2
  exit 1
fi

ROOT="$(mktemp -d /tmp/communipute-runner.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
echo "building $IMAGE from $SUITE at $MIRROR (recipe $RECIPE_HASH) in $ROOT"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR"

# Slim it down: package caches and docs are not needed to run scripts.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
  "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/var/log/* "$ROOT"/tmp/*
# pip installs into a --target volume, never into the system Python; the marker would only
# make `pip install --target` needlessly fragile across pip versions.
rm -f "$ROOT"/usr/lib/python3*/EXTERNALLY-MANAGED
# Mount points of the sandbox: the job's work dir, its outputs and the installed packages.
mkdir -p "$ROOT"/work "$ROOT"/outputs "$ROOT"/opt/env
chmod 0755 "$ROOT"/work "$ROOT"/outputs "$ROOT"/opt/env

tar -C "$ROOT" -c . | docker import \
  --change "LABEL communipute.recipe=$RECIPE_HASH" \
  --change "LABEL org.opencontainers.image.title=communipute-runner" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PYTHONDONTWRITEBYTECODE=1" \
  --change "WORKDIR /work" \
  --change 'CMD ["python3"]' \
  - "$IMAGE"
echo "built $IMAGE (recipe $RECIPE_HASH)"
