#!/usr/bin/env bash
# Makes a local base image for lrrt's images on a host that reaches Debian's and PyPI's package
# registries but no image registry (no python:, tensorflow/ or redis: images to pull):
#
#   deploy/base-image.sh [NAME]        # default lrrt-local/bookworm-python:3.11; prints NAME
#
# Debian bookworm (debootstrap --variant=minbase) with Debian's python3 (3.11, the Python the lock files
# were resolved with) in a virtual environment at /opt/python that comes first on PATH, so `python`,
# `python3` and `pip` mean what they mean in python:3.11-slim-bookworm and the Dockerfiles run unchanged
# with `--build-arg BASE_IMAGE=NAME` (deploy/docker-compose.local.yml passes it). deploy/redis/Dockerfile
# installs Debian's redis-server on it. It trusts the certificate authorities this host added to its own
# store (/usr/local/share/ca-certificates, e.g. a TLS-inspecting proxy in front of PyPI), and pip uses
# that store. Does nothing when NAME exists (FORCE=1 makes it again).
# Needs root, debootstrap and a running Docker engine; takes about a minute.
set -euo pipefail

name=${1:-lrrt-local/bookworm-python:3.11}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -z "${FORCE:-}" ] && docker image inspect "$name" >/dev/null 2>&1; then
  echo "$name"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "base-image.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base-image.sh: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /tmp/lrrt-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image.sh: debootstrap bookworm into $root" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >&2
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >&2
fi
chroot "$root" python3 -m venv /opt/python >&2
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
# Debian's Python is 3.11.2; the lock files were resolved on 3.11.3+, where redis-py needs no
# async-timeout (its requirement has `python_full_version < "3.11.3"`), so the base brings it.
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" /opt/python/bin/pip install --quiet --no-cache-dir --disable-pip-version-check async-timeout==5.0.1 >&2
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "lrrt local base: debootstrap minbase bookworm + python3 venv at /opt/python" \
  - "$name" >/dev/null
echo "$name"
