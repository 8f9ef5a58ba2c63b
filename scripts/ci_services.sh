#!/usr/bin/env bash
# CI services for .ci/run, idempotent: a headless browser and a Korean font for the web-UI test
# (without the font Hangul renders as empty boxes) and PostgreSQL server binaries for the
# team-instance test, Debian's redis-server for the Celery test. Nothing is started here: each test starts its
# own throwaway server on 127.0.0.1 (dagster-webserver, PostgreSQL, Redis) and stops it. Needs root (or sudo) for apt.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "ci_services: not root and no sudo; skipping installs (the UI/PostgreSQL/Celery tests will skip)" >&2
        exit 0
    fi
fi

have_browser() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
have_postgres() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }
have_korean_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ko family)" ]; }

missing=()
have_browser || missing+=(chromium)
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
have_korean_font || missing+=(fonts-nanum)  # 10 MB, Hangul only (fonts-noto-cjk: all of CJK, 56 MB)
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ci_services: no apt-get; install ${missing[*]} yourself (the tests that need them skip)" >&2
        exit 0
    fi
    echo "ci_services: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PostgreSQL refuses to run as root: the test runs its server as this user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

browser=$(command -v chromium || command -v chromium-browser || echo none)
initdb=$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1 || echo none)
korean_font=$(fc-list :lang=ko family 2>/dev/null | head -1)
redis=$(command -v redis-server || echo none)
echo "ci_services: browser=$browser initdb=$initdb redis=$redis korean_font=${korean_font:-none}"
