// Imported first by the entry points that serve the API (src/main/api.ts, src/main/dev.ts), so it runs
// before the rest of the process allocates anything.
//
// V8 "pretenures" an allocation site (allocates its objects straight into the old generation) once
// most of its objects survived a young-generation collection. In the API that misfires: whenever
// operations pile up for a moment (thousands of agents reconnecting, a slow batch write), per-operation
// objects (GraphQL contexts, graphql-ws messages, variables) survive one scavenge, their sites get
// pretenured, and from then on every operation's objects land in the old generation, where they are
// dead within milliseconds but keep the young objects they point to alive through scavenges as well.
// Measured with bench/heartbeats at 2,000 heartbeats/s (API answering from memory, writes off): 8 MB/s
// promoted to the old generation with pretenuring, 3 MB/s without; scavenges of 3-10 ms became 2-4 ms,
// and mark-compact collections, which stop the API for 10-75 ms, come that much less often. Objects
// that do live long are still promoted; they are copied once more on the way.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-allocation-site-pretenuring');
