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
# nix-setup-systemd package creates it, but wants systemd). Create what it would, with one user per
# build that may run at once (Nix gives each concurrent build its own free nixbld user).
NIX_BUILD_USERS=32
getent group nixbld >/dev/null || as_root groupadd --system nixbld
for i in $(seq 1 $NIX_BUILD_USERS); do
  getent passwd "nixbld$i" >/dev/null && continue
  [ -n "${nixbld_logged:-}" ] || { log "creating the nixbld build users (up to nixbld$NIX_BUILD_USERS)"; nixbld_logged=1; }
  as_root useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
    --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
done
# Tenant builds run in Nix's sandbox, and evaluation never builds (import-from-derivation off).
# Convoy passes these options on every call too; nix.conf makes hand-run nix commands agree. An
# existing nix.conf (older setups wrote `sandbox = false`) is corrected in place.
as_root mkdir -p /etc/nix
[ -f /etc/nix/nix.conf ] || printf 'build-users-group = nixbld\n' | as_root tee /etc/nix/nix.conf >/dev/null
nix_conf_set() {
  if grep -Eq "^[[:space:]]*$1[[:space:]]*=" /etc/nix/nix.conf; then
    grep -Eq "^[[:space:]]*$1[[:space:]]*=[[:space:]]*$2[[:space:]]*$" /etc/nix/nix.conf \
      || { log "nix.conf: setting $1 = $2"; as_root sed -i -E "s|^[[:space:]]*$1[[:space:]]*=.*|$1 = $2|" /etc/nix/nix.conf; }
  else
    printf '%s = %s\n' "$1" "$2" | as_root tee -a /etc/nix/nix.conf >/dev/null
  fi
}
nix_conf_set build-users-group nixbld
nix_conf_set sandbox true
nix_conf_set sandbox-fallback false
nix_conf_set allow-import-from-derivation false
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

# --- Credentials of Convoy's own PostgreSQL role and of Redis -----------------------------------
# Generated once, kept root-only; a second wall behind the build sandbox (README, "Security model").
if [ "$(id -u)" = 0 ]; then CREDENTIALS_FILE=${CONVOY_CREDENTIALS_FILE:-/var/lib/convoy/credentials.env}
else CREDENTIALS_FILE=${CONVOY_CREDENTIALS_FILE:-$HOME/.config/convoy/credentials.env}; fi
if [ ! -s "$CREDENTIALS_FILE" ]; then
  log "writing new service credentials to $CREDENTIALS_FILE"
  mkdir -p "$(dirname "$CREDENTIALS_FILE")"
  (umask 077; printf 'CONVOY_DB_PASSWORD=%s\nCONVOY_REDIS_PASSWORD=%s\n' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" > "$CREDENTIALS_FILE")
fi
# shellcheck disable=SC1090
. "$CREDENTIALS_FILE"

# --- PostgreSQL -------------------------------------------------------------------------------
if ! (command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h $PG_HOST -p $PG_PORT); then
  if ! ls /etc/postgresql 2>/dev/null | grep -q .; then apt_install postgresql; fi
  log 'starting PostgreSQL'
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  for _ in $(seq 1 40); do pg_isready -q -h $PG_HOST -p $PG_PORT && break; sleep 0.5; done
  pg_isready -q -h $PG_HOST -p $PG_PORT || { log 'PostgreSQL does not answer'; exit 1; }
fi
# Administration (roles, databases, the test suite's databases): the postgres superuser over TCP where
# that works (trust auth), else through peer auth as the postgres OS user.
pg_admin() {
  if psql -h $PG_HOST -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then psql -h $PG_HOST -U postgres -v ON_ERROR_STOP=1 -Atq "$@"
  else as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -Atq "$@"; fi
}
# Two roles: convoy (the main job: owns its database, no superuser) and convoy_admin (a superuser that
# the test suite uses to create and drop its databases). Passwords from the credentials file.
pg_admin -d postgres -v db_password="$CONVOY_DB_PASSWORD" >/dev/null <<'SQL'
SELECT format('CREATE ROLE convoy LOGIN') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'convoy') \gexec
SELECT format('CREATE ROLE convoy_admin LOGIN SUPERUSER') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'convoy_admin') \gexec
ALTER ROLE convoy NOSUPERUSER NOCREATEROLE PASSWORD :'db_password';
ALTER ROLE convoy_admin PASSWORD :'db_password';
SELECT 'CREATE DATABASE convoy OWNER convoy' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'convoy') \gexec
ALTER DATABASE convoy OWNER TO convoy;
SQL
# A database made by an older setup (as postgres) changes hands, with its tables, types and sequences.
pg_admin -d convoy >/dev/null <<'SQL'
ALTER SCHEMA public OWNER TO convoy;
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm') AND pg_get_userbyid(c.relowner) <> 'convoy' LOOP
    EXECUTE format(CASE r.relkind WHEN 'S' THEN 'ALTER SEQUENCE %s OWNER TO convoy' WHEN 'v' THEN 'ALTER VIEW %s OWNER TO convoy'
                   WHEN 'm' THEN 'ALTER MATERIALIZED VIEW %s OWNER TO convoy' ELSE 'ALTER TABLE %s OWNER TO convoy' END, r.name);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' AND t.typtype = 'e' AND pg_get_userbyid(t.typowner) <> 'convoy' LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO convoy', r.name);
  END LOOP;
END$$;
SQL
export CONVOY_DATABASE_URL="postgresql://convoy:$CONVOY_DB_PASSWORD@$PG_HOST:$PG_PORT/convoy"
if psql -h $PG_HOST -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  export CONVOY_PG_ADMIN_URL="postgresql://postgres@$PG_HOST:$PG_PORT/postgres"
else
  export CONVOY_PG_ADMIN_URL="postgresql://convoy_admin:$CONVOY_DB_PASSWORD@$PG_HOST:$PG_PORT/postgres"
fi

# --- Redis ------------------------------------------------------------------------------------
# redis-cli reads the password from REDISCLI_AUTH, never from its argument list.
redis_cli() { if [ -n "${1:-}" ]; then REDISCLI_AUTH=$1 redis-cli --no-auth-warning -h 127.0.0.1 -p $REDIS_PORT "${@:2}"
  else env -u REDISCLI_AUTH redis-cli -h 127.0.0.1 -p $REDIS_PORT "${@:2}"; fi; }
redis_ping() { redis_cli "${1:-}" ping 2>/dev/null; }
if ! command -v redis-cli >/dev/null 2>&1 || { [ "$(redis_ping)" != PONG ] && [ "$(redis_ping "$CONVOY_REDIS_PASSWORD")" != PONG ] && ! redis_ping | grep -q NOAUTH; }; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log 'starting Redis'
  printf 'requirepass %s\n' "$CONVOY_REDIS_PASSWORD" | redis-server - --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no >/dev/null
  for _ in $(seq 1 40); do [ "$(redis_ping "$CONVOY_REDIS_PASSWORD")" = PONG ] && break; sleep 0.25; done
fi
if [ "$(redis_ping)" = PONG ]; then
  # A Redis that asks for no password gets Convoy's (until it restarts; setup sets it again).
  log 'Redis had no password: setting requirepass'
  # Through stdin, so the password never shows in a process list.
  printf 'CONFIG SET requirepass %s\n' "$CONVOY_REDIS_PASSWORD" | redis_cli '' | grep -q OK \
    || log 'could not set a Redis password (CONFIG is disabled?): Convoy will warn at start'
fi
if [ "$(redis_ping "$CONVOY_REDIS_PASSWORD")" = PONG ]; then
  export CONVOY_REDIS_URL="redis://:$CONVOY_REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
elif [ "$(redis_ping)" = PONG ]; then
  export CONVOY_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
else
  log "Redis on 127.0.0.1:$REDIS_PORT asks for a password that is not in $CREDENTIALS_FILE: set REDIS_URL"; exit 1
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
