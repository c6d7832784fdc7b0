# shellcheck shell=bash
# Small helpers shared by the scripts: section headers and installing missing system packages.

step() {
    printf '\n==> %s\n' "$*" >&2
}

_APT_UPDATED=""

# apt_install PACKAGE...: installs the packages with apt-get (running `apt-get update` once
# first). Needs root, which the project's machines and CI have.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "apt_install: apt-get is not available; install $* by hand" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if [ -z "$_APT_UPDATED" ]; then
        $sudo apt-get update -qq >&2
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

# ensure_postgres: makes initdb and pg_ctl available, installing PostgreSQL when missing.
ensure_postgres() {
    if command -v initdb >/dev/null 2>&1 || ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
        return 0
    fi
    step "installing PostgreSQL"
    apt_install postgresql
}

# ensure_openssl_dev: the headers librdkafka's TLS support builds against (composable-kafka's
# `ssl` feature, which `--all-features` turns on).
ensure_openssl_dev() {
    if pkg-config --exists openssl 2>/dev/null; then
        return 0
    fi
    step "installing the OpenSSL headers"
    apt_install libssl-dev pkg-config
}
