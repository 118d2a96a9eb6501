// How many WebSockets a client may hold, and for how long one may stay without an accepted credential.
//
// Close codes (graphql-ws's own where it has one):
//   4403 Forbidden        connection_init without credentials (every subscription needs them)
//   4408 Init timeout     no connection_init within CONVOY_WS_AUTH_TIMEOUT_SECONDS of opening
//   4401 Unauthorized     its credential was refused, and that long has passed (operations sent before
//                         then are answered UNAUTHENTICATED, as over HTTP: agents rely on that)
//   4429 Too many         past a limit: sockets per client address, sockets per address not yet
//                         authenticated, sockets per user or worker, operations in flight per socket
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { Config } from '../config.js';
import type { Caller } from '../modules/auth/caller.js';
import { addressLimitKey, clientAddress } from '../platform/ratelimit/client-address.js';

export const WS_CLOSE = { forbidden: 4403, initTimeout: 4408, unauthorized: 4401, tooMany: 4429 } as const;

type HeaderSource = { get(name: string): string | null };

type SocketState = {
  address: string;
  /** `user:<id>` or `worker:<id>` once a credential was accepted. */
  caller: string | null;
  initReceived: boolean;
  timer: NodeJS.Timeout;
};

function increment(counts: Map<string, number>, key: string) {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function decrement(counts: Map<string, number>, key: string) {
  const left = (counts.get(key) ?? 1) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}

export class WebSocketLimits {
  private readonly perAddress = new Map<string, number>();
  private readonly unauthenticatedPerAddress = new Map<string, number>();
  private readonly perCaller = new Map<string, number>();
  private readonly sockets = new WeakMap<WebSocket, SocketState>();

  constructor(
    private readonly limits: Config['websocket'],
    private readonly trustedProxies: readonly string[],
  ) {}

  /** A socket opened: counted against its address, or closed when the address has too many. */
  opened(socket: WebSocket, req: IncomingMessage): void {
    const address = addressLimitKey(clientAddress(req, this.trustedProxies));
    if ((this.perAddress.get(address) ?? 0) >= this.limits.maxConnectionsPerIp) {
      return socket.close(WS_CLOSE.tooMany, 'Too many connections from this address');
    }
    if ((this.unauthenticatedPerAddress.get(address) ?? 0) >= this.limits.maxUnauthenticatedPerIp) {
      return socket.close(WS_CLOSE.tooMany, 'Too many unauthenticated connections from this address');
    }
    increment(this.perAddress, address);
    increment(this.unauthenticatedPerAddress, address);
    const state: SocketState = {
      address,
      caller: null,
      initReceived: false,
      timer: setTimeout(() => {
        if (state.caller) return;
        if (state.initReceived) socket.close(WS_CLOSE.unauthorized, 'Unauthorized: no accepted credential');
        else socket.close(WS_CLOSE.initTimeout, 'Connection initialisation timeout');
      }, this.limits.authTimeoutSeconds * 1000),
    };
    state.timer.unref();
    this.sockets.set(socket, state);
    socket.once('close', () => {
      clearTimeout(state.timer);
      decrement(this.perAddress, address);
      if (state.caller) decrement(this.perCaller, state.caller);
      else decrement(this.unauthenticatedPerAddress, address);
    });
  }

  /**
   * connection_init arrived (graphql-ws's onConnect): false when the socket was closed. A credential that
   * is refused (or cannot be checked now) still gets the connection acknowledged: its operations are then
   * answered as over HTTP, until the auth timeout closes the socket.
   */
  async connect(socket: WebSocket, headers: HeaderSource, authenticate: (headers: HeaderSource) => Promise<Caller>): Promise<boolean> {
    const state = this.sockets.get(socket);
    if (!state) return false;
    state.initReceived = true;
    if (!headers.get('authorization')) {
      socket.close(WS_CLOSE.forbidden, 'Forbidden: connection_init must carry credentials');
      return false;
    }
    let caller: Caller;
    try {
      caller = await authenticate(headers);
    } catch {
      return true;
    }
    if (socket.readyState !== socket.OPEN) return false;
    const key = caller.kind === 'worker' ? `worker:${caller.workerId}` : caller.kind === 'user' ? `user:${caller.userId}` : null;
    if (!key) return true;
    if ((this.perCaller.get(key) ?? 0) >= this.limits.maxConnectionsPerCaller) {
      socket.close(WS_CLOSE.tooMany, 'Too many connections for this account');
      return false;
    }
    increment(this.perCaller, key);
    decrement(this.unauthenticatedPerAddress, state.address);
    state.caller = key;
    clearTimeout(state.timer);
    return true;
  }

  /** A new operation on a socket with `inFlight` operations (itself included): false closes the socket. */
  admitOperation(socket: WebSocket, inFlight: number): boolean {
    if (inFlight <= this.limits.maxOperationsPerConnection) return true;
    socket.close(WS_CLOSE.tooMany, 'Too many operations in flight on this connection');
    return false;
  }
}
