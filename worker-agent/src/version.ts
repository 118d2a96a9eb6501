import { readFileSync } from 'node:fs';

/** The agent ships with the control plane, so it carries Convoy's version. */
export const AGENT_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
