export * from './orchestrator.js';
export { SwarmOrchestrator, dockerFromHost } from './swarm.js';
