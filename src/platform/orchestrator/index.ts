export * from './orchestrator.js';
export { SwarmOrchestrator, dockerFromHost } from './swarm.js';
export { specDrift, type DriftField } from './drift.js';
