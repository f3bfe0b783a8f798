#!/usr/bin/env bash
# Creates, on a docker engine that cannot pull images, the two base images docker/Dockerfile
# names, from Debian packages and this machine's own Rust toolchain:
#   debian:bookworm-slim       a debootstrap (minbase) root, loaded with `docker import`
#   rust:1.95-slim-bookworm    the same root with gcc, libc6-dev and pkg-config, and the
#                              toolchain of `rustc --print sysroot` in /usr/local/rust, with
#                              cargo and rustc on PATH as in the official image
# An image that already exists is left alone (--force makes both again, --rust the Rust one). On a machine that
# can pull, none of this is needed: `docker compose build` fetches the real images.
# Needs root, debootstrap and the apt sources of a Debian machine (the mirror is read from
# them). The certificate authorities in /usr/local/share/ca-certificates go into the Rust
# image, so that a TLS proxy this machine trusts is trusted by cargo in the build too.
set -euo pipefail
cd "$(dirname "$0")/.."
force=false
[ "${1:-}" = "--force" ] && force=true
work=target/docker-base
have() { docker image inspect "$1" >/dev/null 2>&1; }
mirror=$( (grep -rhoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null || true) |
    awk '{print $NF}' | grep -E '/debian/?$' | head -1 || true)
[ -n "$mirror" ] || { echo "docker-base-images: no Debian mirror in /etc/apt sources" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "docker-base-images: apt-get install debootstrap" >&2; exit 1; }

strap() { # dir extra-packages
    local dir=$1 extra=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    debootstrap --variant=minbase ${extra:+--include=$extra} bookworm "$dir" "$mirror" > "$dir.log" 2>&1 ||
        { tail -20 "$dir.log" >&2; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    # The real images' apt sources: the same mirror.
    echo "deb $mirror bookworm main" > "$dir/etc/apt/sources.list"
    # Certificate authorities this machine adds (a proxy it trusts) are trusted inside too.
    if [ -x "$dir/usr/sbin/update-ca-certificates" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
        chroot "$dir" update-ca-certificates >/dev/null 2>&1
    fi
}

if $force || ! have debian:bookworm-slim; then
    echo "docker-base-images: debian:bookworm-slim (debootstrap from $mirror)"
    strap "$work/debian" ""
    tar -C "$work/debian" -c . | docker import \
        --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
    rm -rf "$work/debian"
fi
if $force || [ "${1:-}" = "--rust" ] || ! have rust:1.95-slim-bookworm; then
    sysroot=$(rustc --print sysroot)
    echo "docker-base-images: rust:1.95-slim-bookworm (toolchain from $sysroot)"
    strap "$work/rust" "gcc,libc6-dev,pkg-config,ca-certificates"
    mkdir -p "$work/rust/usr/local/rust" "$work/rust/usr/local/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$work/rust/usr/local/rust" -x
    for b in cargo rustc rustdoc; do ln -s "/usr/local/rust/bin/$b" "$work/rust/usr/local/cargo/bin/$b"; done
    tar -C "$work/rust" -c . | docker import \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - rust:1.95-slim-bookworm >/dev/null
    rm -rf "$work/rust"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(debian:bookworm-slim|rust:1.95-slim-bookworm) '
