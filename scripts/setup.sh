#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine for Convoy: system packages, Docker engine with a swarm, Nix,
# PostgreSQL and Redis (installed only when none answers), npm packages and the generated client.
# Idempotent and quick when everything is already there. Sourced by scripts/start.sh and scripts/test.sh.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

command -v dockerd >/dev/null 2>&1 || apt_install docker.io
command -v nix-build >/dev/null 2>&1 || apt_install nix-bin
# nix-bin alone has no build users: Nix refuses to build without the nixbld group (Debian's
# nix-setup-systemd package creates it, but wants systemd). Create what it would.
if ! getent group nixbld >/dev/null; then
  log 'creating the nixbld build users'
  as_root groupadd --system nixbld
  for i in $(seq 1 8); do
    as_root useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
      --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
  done
fi
if [ ! -f /etc/nix/nix.conf ]; then
  as_root mkdir -p /etc/nix
  # No sandbox: it needs user namespaces that containers and CI machines often lack.
  printf 'build-users-group = nixbld\nsandbox = false\n' | as_root tee /etc/nix/nix.conf >/dev/null
fi
# docker-registry: a local registry for the tests of image distribution (REGISTRY_URL).
# iproute2 (ip netns) and util-linux (unshare, mount): the multi-node swarm of test/cluster.test.ts.
apt_install busybox-static git ca-certificates docker-registry iproute2 util-linux

# --- Docker engine ----------------------------------------------------------------------------
if ! as_root docker info >/dev/null 2>&1; then
  log 'starting dockerd'
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    as_root systemctl start docker || true
  fi
  if ! as_root docker info >/dev/null 2>&1; then
    for driver in overlay2 vfs; do
      as_root sh -c "nohup dockerd --storage-driver=$driver >/var/log/convoy-dockerd.log 2>&1 &"
      for _ in $(seq 1 60); do as_root docker info >/dev/null 2>&1 && break; sleep 0.5; done
      as_root docker info >/dev/null 2>&1 && break
      log "dockerd did not start with $driver"; as_root pkill dockerd || true; sleep 1
    done
  fi
  as_root docker info >/dev/null 2>&1 || { log 'Docker engine is not available'; exit 1; }
fi
if [ "$(as_root docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  log 'initialising a single-node swarm'
  as_root docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

# --- PostgreSQL -------------------------------------------------------------------------------
if ! (command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h $PG_HOST -p $PG_PORT); then
  if ! ls /etc/postgresql 2>/dev/null | grep -q .; then apt_install postgresql; fi
  log 'starting PostgreSQL'
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  for _ in $(seq 1 40); do pg_isready -q -h $PG_HOST -p $PG_PORT && break; sleep 0.5; done
  pg_isready -q -h $PG_HOST -p $PG_PORT || { log 'PostgreSQL does not answer'; exit 1; }
fi
# Convoy connects as a superuser role of its own (it creates databases for tests); peer auth sets it up.
if ! psql "postgresql://convoy:convoy@$PG_HOST:$PG_PORT/postgres" -Atqc 'select 1' >/dev/null 2>&1 \
   && ! psql -h $PG_HOST -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  log 'creating the convoy database role'
  as_root su postgres -c "psql -q -c \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='convoy') THEN CREATE ROLE convoy LOGIN SUPERUSER PASSWORD 'convoy'; END IF; END\\\$\\\$\""
fi
if psql -h $PG_HOST -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  export CONVOY_PG_ADMIN_URL="postgresql://postgres@$PG_HOST:$PG_PORT/postgres"
else
  export CONVOY_PG_ADMIN_URL="postgresql://convoy:convoy@$PG_HOST:$PG_PORT/postgres"
fi

# --- Redis ------------------------------------------------------------------------------------
if ! (command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null)" = PONG ]); then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log 'starting Redis'
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no >/dev/null
  for _ in $(seq 1 40); do [ "$(redis-cli -p $REDIS_PORT ping 2>/dev/null)" = PONG ] && break; sleep 0.25; done
  [ "$(redis-cli -p $REDIS_PORT ping 2>/dev/null)" = PONG ] || { log 'Redis does not answer'; exit 1; }
fi

# --- Node packages ----------------------------------------------------------------------------
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || { log "Node.js >= 20.19 is required (found $(node --version))"; exit 1; }
lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f node_modules/.convoy-lock-hash ] || [ "$(cat node_modules/.convoy-lock-hash)" != "$lock_hash" ]; then
  log 'installing npm packages'
  # Not `npm ci`: the registry here lacks some other-platform optional packages (msgpackr-extract for
  # darwin/win32), which npm then cannot record in the lock file and `npm ci` refuses. `npm install`
  # still installs the locked versions.
  npm install --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.convoy-lock-hash
fi
schema_hash=$(cat prisma/schema.prisma package-lock.json | sha256sum | cut -c1-16)
if [ ! -f src/generated/.schema-hash ] || [ "$(cat src/generated/.schema-hash)" != "$schema_hash" ]; then
  log 'generating the Prisma client'
  npm run --silent generate >/dev/null
  echo "$schema_hash" > src/generated/.schema-hash
fi
log 'ready'
