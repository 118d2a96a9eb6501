// GET /install/worker.sh?token=cvy_join_...: a bash script that sets up a Debian/Ubuntu node and starts
// the worker agent with that join token. Only values whose format was checked reach the script (the
// token, the API URL, the swarm's join token and manager address, the configured agent image), each
// in single quotes, and the characters those formats allow cannot end a quoted string.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App } from '../../app.js';
import type { Config } from '../../config.js';
import { IMAGE_REFERENCE } from '../../shared/validation.js';
import { findLiveJoinToken, swarmJoinData, type SwarmJoinData } from './service.js';
import { JOIN_TOKEN } from './validation.js';
import { clientAddressOf } from '../auth/throttle.js';
import { joinTokenCounter } from './join-limits.js';
import { asServiceUnavailable } from '../common/unavailable.js';
import { RETRY_AFTER_SECONDS } from '../common/errors.js';

export const INSTALL_SCRIPT_PATH = '/install/worker.sh';

const API_URL = /^https?:\/\/(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?$/;
const PLAIN_HOST = /^[A-Za-z0-9.-]{1,253}$/;
const WILDCARD_HOSTS = new Set(['', '0.0.0.0', '::', '[::]']);

/**
 * CONVOY_PUBLIC_URL (required in production). Elsewhere the address this server listens on (localhost
 * when it listens on every interface) with the port the request arrived on: never the request's Host
 * header, which whoever sends the request chooses, and which would end up in a script run as root.
 */
export function apiUrlFor(config: Pick<Config, 'publicUrl' | 'host' | 'port'>, localPort?: number): string {
  if (config.publicUrl) return config.publicUrl;
  const host = config.host.trim();
  const shown = WILDCARD_HOSTS.has(host) ? 'localhost' : host.includes(':') ? `[${host.replace(/^\[|\]$/g, '')}]` : PLAIN_HOST.test(host) ? host : 'localhost';
  return `http://${shown}:${localPort || config.port}`;
}

export function installCommand(apiUrl: string, token: string): string {
  return `curl -fsSL '${apiUrl}${INSTALL_SCRIPT_PATH}?token=${token}' | sudo bash`;
}

export type InstallScriptInput = { apiUrl: string; joinToken: string; agentImage: string; swarm: SwarmJoinData | null; expiresAt: Date };

/** Refuses (throws) any value outside its format: the last line of defence for what reaches the shell. */
function checked(value: string, pattern: RegExp, what: string): string {
  if (!pattern.test(value) || /['\\\n\r]/.test(value)) throw new Error(`refusing to put an unexpected ${what} into the install script`);
  return value;
}

export function renderInstallScript(input: InstallScriptInput): string {
  const apiUrl = checked(input.apiUrl, API_URL, 'API URL');
  const token = checked(input.joinToken, JOIN_TOKEN, 'join token');
  const image = checked(input.agentImage, IMAGE_REFERENCE, 'agent image');
  const swarmToken = input.swarm ? checked(input.swarm.joinToken, /^SWMTKN-1-[A-Za-z0-9-]{1,250}$/, 'swarm join token') : '';
  const manager = input.swarm ? checked(input.swarm.managerAddress, /^(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$/, 'manager address') : '';
  return `#!/usr/bin/env bash
# Convoy worker installer for Debian and Ubuntu, generated for one join token (single use, expires
# ${input.expiresAt.toISOString()}). Installs Docker, Nix and busybox when missing, joins the swarm and
# runs the Convoy worker agent as the systemd service convoy-agent.
set -euo pipefail

CONVOY_API_URL='${apiUrl}'
CONVOY_JOIN_TOKEN='${token}'
CONVOY_AGENT_IMAGE='${image}'
SWARM_JOIN_TOKEN='${swarmToken}'
SWARM_MANAGER_ADDR='${manager}'

ENV_FILE=/etc/convoy/agent.env
UNIT_FILE=/etc/systemd/system/convoy-agent.service
STATE_DIR=/var/lib/convoy-agent

say() { printf 'convoy: %s\\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run this script as root (curl ... | sudo bash)"
command -v apt-get >/dev/null 2>&1 || die "this installer supports Debian and Ubuntu (apt-get) only"
command -v systemctl >/dev/null 2>&1 || die "this installer needs systemd"

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v nix-build >/dev/null 2>&1 || missing+=(nix-bin)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
if [ "\${#missing[@]}" -gt 0 ]; then
  say "installing \${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "\${missing[@]}"
fi
systemctl enable --now docker >/dev/null 2>&1 || true
docker info >/dev/null 2>&1 || die "the Docker engine does not answer"

swarm_state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [ "$swarm_state" = "inactive" ]; then
  [ -n "$SWARM_JOIN_TOKEN" ] || die "the control plane has no swarm to join (is its Docker engine a swarm manager?)"
  say "joining the swarm at $SWARM_MANAGER_ADDR"
  docker swarm join --token "$SWARM_JOIN_TOKEN" "$SWARM_MANAGER_ADDR"
elif [ "$swarm_state" != "active" ]; then
  die "this node's swarm state is $swarm_state; fix it (docker swarm leave) and run the installer again"
fi

# The join token only ever lives in a root-only file; the agent trades it for its own credential.
install -d -m 700 /etc/convoy
install -d -m 700 "$STATE_DIR"
umask 077
printf 'CONVOY_API_URL=%s\\nCONVOY_JOIN_TOKEN=%s\\n' "$CONVOY_API_URL" "$CONVOY_JOIN_TOKEN" > "$ENV_FILE"
chmod 600 "$ENV_FILE"

if ! docker image inspect "$CONVOY_AGENT_IMAGE" >/dev/null 2>&1; then
  say "pulling $CONVOY_AGENT_IMAGE"
  docker pull "$CONVOY_AGENT_IMAGE"
fi

cat > "$UNIT_FILE" <<UNIT
[Unit]
Description=Convoy worker agent
After=docker.service network-online.target
Requires=docker.service
Wants=network-online.target

[Service]
EnvironmentFile=$ENV_FILE
ExecStartPre=-/usr/bin/docker rm -f convoy-agent
ExecStart=/usr/bin/docker run --rm --name convoy-agent --network host --pid host --uts host \\\\
  -e CONVOY_API_URL -e CONVOY_JOIN_TOKEN -e CONVOY_AGENT_STATE=$STATE_DIR/state.json -e CONVOY_AGENT_DISK_PATH=/host \\\\
  -v /var/run/docker.sock:/var/run/docker.sock -v $STATE_DIR:$STATE_DIR -v /nix:/nix -v /:/host:ro \\\\
  $CONVOY_AGENT_IMAGE npx tsx worker-agent/src/main.ts
ExecStop=/usr/bin/docker stop convoy-agent
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
chmod 644 "$UNIT_FILE"

systemctl daemon-reload
systemctl enable convoy-agent >/dev/null
systemctl restart convoy-agent
say "the worker agent is running (journalctl -u convoy-agent -f); it registers with $CONVOY_API_URL"
`;
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(`convoy: ${text}\n`);
}

export async function handleInstallScript(app: App, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    // Failed tries (malformed or dead tokens) count on the counter registerWorker uses too.
    const [limit, key] = joinTokenCounter(app, clientAddressOf(app, req));
    const wait = await limit.take(key);
    if (wait > 0) return sendText(res, 429, `too many failed attempts; try again in ${wait} s`, { 'retry-after': String(wait) });
    // Counted before the token is looked up; given back once it turned out to be a live one.
    const refuse = (status: number, text: string) => sendText(res, status, text);
    const params = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const tokens = params.getAll('token');
    if (tokens.length !== 1 || !JOIN_TOKEN.test(tokens[0]!)) return refuse(400, 'malformed join token');
    const joinToken = await findLiveJoinToken(app.db, tokens[0]!);
    if (!joinToken) return refuse(404, 'unknown, used, revoked or expired join token');
    await limit.giveBack(key);
    const apiUrl = apiUrlFor(app.config, req.socket.localPort);
    const swarm = await swarmJoinData(app);
    const script = renderInstallScript({ apiUrl, joinToken: tokens[0]!, agentImage: app.config.workers.agentImage, swarm, expiresAt: joinToken.expiresAt });
    res.writeHead(200, { 'content-type': 'text/x-shellscript; charset=utf-8', 'cache-control': 'no-store' }).end(script);
  } catch (error) {
    const outage = asServiceUnavailable(error);
    if (outage) {
      app.log.warn({ err: error, dependency: outage.dependency }, 'install script: dependency unavailable');
      return sendText(res, 503, `${outage.dependency} is unavailable; retry shortly`, { 'retry-after': String(RETRY_AFTER_SECONDS) });
    }
    app.log.error({ err: error }, 'install script failed');
    sendText(res, 500, 'the control plane could not generate the install script');
  }
}
