// The controller killed with SIGKILL at a random moment mid-deploy, five rounds (the long form, with two
// controllers too, is bench/chaos.ts): every round ends RUNNING with the new env on every task, one Swarm
// service, nothing left queued or deploying. The API and the controllers are real child processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { percentile, startChaosRig, type ChaosRig } from './helpers/chaos.js';

const ROUNDS = 5;
let rig: ChaosRig;

beforeAll(async () => {
  rig = await startChaosRig();
}, 120_000);
afterAll(async () => {
  await rig?.close();
}, 60_000);

describe('controller killed mid-deploy', () => {
  it(`converges in each of ${ROUNDS} rounds to the newest env on every task, with one Swarm service`, async () => {
    const converged: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const result = await rig.round(round);
      console.log(`round ${round}: killed ${result.killAfterMs} ms after deploy (${result.statusAtKill}), converged in ${result.convergedMs} ms (replacement up after ${result.replacementReadyMs ?? '?'} ms)${result.problems.length ? `: ${result.problems.join('; ')}` : ''}`);
      if (result.problems.length) console.log(rig.output().slice(-6000));
      expect(result.problems).toEqual([]);
      converged.push(result.convergedMs);
    }
    console.log(`converged after the kill: p50 ${percentile(converged, 50)} ms, max ${Math.max(...converged)} ms`);
  }, 300_000);
});
