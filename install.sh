#!/usr/bin/env bash
# Installs what DropHost needs on a Debian/Ubuntu machine: nginx and PostgreSQL when missing
# (as root, from the distribution's packages), then DropHost itself into .venv.
#   ./install.sh          the service
#   ./install.sh --dev    the service plus the test tools
set -euo pipefail
cd "$(dirname "$0")"

need_packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_packages+=(nginx-light)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_packages+=(postgresql)
command -v openssl >/dev/null 2>&1 || need_packages+=(openssl)  # drophost tls init
# git sources and hosted repositories; GitPython also asks for git when it is imported.
command -v git >/dev/null 2>&1 || need_packages+=(git)
# Builds from source (deploy.yaml build:) run in a bubblewrap sandbox.
command -v bwrap >/dev/null 2>&1 || need_packages+=(bubblewrap)
if [ "${1:-}" = "--dev" ]; then
  command -v zip >/dev/null 2>&1 || need_packages+=(zip)
  # The dashboard tests drive this browser (through Playwright, which never downloads its own).
  [ -x /usr/bin/chromium ] || need_packages+=(chromium)
  command -v unzip >/dev/null 2>&1 || need_packages+=(unzip)  # the benchmark's baseline
  command -v wrk >/dev/null 2>&1 || need_packages+=(wrk)  # the scale benchmark's load generator
  # The ssh-remote test runs its own sshd on a loopback port; git fetches through the ssh client.
  command -v ssh >/dev/null 2>&1 || need_packages+=(openssh-client)
  [ -x /usr/sbin/sshd ] || need_packages+=(openssh-server)
  # The HTTPS test: curl as a team member would use it, and NSS's certutil to make Chromium trust
  # DropHost's own authority.
  command -v curl >/dev/null 2>&1 || need_packages+=(curl)
  command -v certutil >/dev/null 2>&1 || need_packages+=(libnss3-tools)
  # The build tests build a Hugo site, an MkDocs site and a Node script inside the sandbox, which
  # sees /usr only: Debian's packages, not this virtualenv's (its Python may live elsewhere).
  command -v hugo >/dev/null 2>&1 || need_packages+=(hugo)
  [ -x /usr/bin/mkdocs ] || need_packages+=(mkdocs)
  command -v node >/dev/null 2>&1 || need_packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || need_packages+=(npm)  # axe-core for the dashboard's browser tests
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: please install these packages first (as root): ${need_packages[*]}" >&2
    exit 1
  fi
  echo "install.sh: installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
  # Debian starts a system-wide nginx on port 80 after installing it; DropHost runs its own.
  if [[ " ${need_packages[*]} " == *" nginx-light "* ]]; then
    (command -v service >/dev/null && service nginx stop >/dev/null 2>&1) || pkill -x nginx || true
  fi
  # Likewise a system sshd on port 22: the tests start their own. Stopped through the service
  # manager only (never pkill: an sshd already running may be how someone reaches this machine).
  if [[ " ${need_packages[*]} " == *" openssh-server "* ]]; then
    (command -v systemctl >/dev/null && systemctl disable --now ssh >/dev/null 2>&1) \
      || (command -v service >/dev/null && service ssh stop >/dev/null 2>&1) || true
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
  # The browser tests check every dashboard page with axe-core, injected from here (pinned; never
  # fetched at test time).
  [ -f .venv/node/node_modules/axe-core/axe.min.js ] \
    || npm install --silent --no-audit --no-fund --prefix .venv/node axe-core@4.10.2 >/dev/null
else
  .venv/bin/python -m pip install -q -e .
fi
echo "install.sh: DropHost is installed in .venv (run .venv/bin/drophost up)"
