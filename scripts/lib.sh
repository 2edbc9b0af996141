# Shared helpers for the README's scripts: idempotent Debian package installs and a Rust check.
# Sourced, not run.

# ensure_packages PKG...: installs the Debian packages that are missing (apt-get update once).
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing Debian packages: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

ensure_rust() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 2; }
}

# Packages every build needs: clang + libbpf headers + bpftool build the BPF programs;
# libseccomp-dev links the launch engine (youki's libcontainer, seccomp).
BUILD_PACKAGES=(clang-19 libbpf-dev bpftool pkg-config e2fsprogs libseccomp-dev)
