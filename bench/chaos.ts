// The controller killed with SIGKILL at a random moment mid-deploy: 20 rounds with one controller, then 5
// with two controllers running (one of them killed, at random). Each round changes the service's env,
// deploys, kills, starts a replacement and checks that the deployment ends RUNNING with the new env on
// every task, one Swarm service and nothing queued or deploying. The short form is test/controller-chaos.test.ts.
//
//   npx tsx bench/chaos.ts [--rounds 20] [--dual-rounds 5] [--max-kill-delay-ms 2500]
//
// Prints one line per round, convergence times (kill to RUNNING) p50/max, and PASS/FAIL. Exits non-zero
// only on errors; failed rounds are reported as FAIL.
import { parseArgs } from 'node:util';
import globalSetup from '../test/global-setup.js';
import { percentile, startChaosRig, type ChaosRig, type ChaosRound } from '../test/helpers/chaos.js';
import { fmt, runBench } from './lib/timing.js';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '20' }, 'dual-rounds': { type: 'string', default: '5' }, 'max-kill-delay-ms': { type: 'string', default: '2500' } } });
const rounds = Number(args.rounds);
const dualRounds = Number(args['dual-rounds']);
const maxKillDelayMs = Number(args['max-kill-delay-ms']);
if (![rounds, dualRounds, maxKillDelayMs].every((n) => Number.isInteger(n) && n >= 0)) {
  console.error('--rounds, --dual-rounds and --max-kill-delay-ms must be non-negative integers');
  process.exit(2);
}

let rig: ChaosRig | undefined;

async function main() {
  await globalSetup();
  rig = await startChaosRig();
  const results: ChaosRound[] = [];
  const run = async (round: number) => {
    const result = await rig!.round(round, { maxKillDelayMs });
    results.push(result);
    const verdict = result.problems.length ? `FAIL: ${result.problems.join('; ')}` : 'ok';
    console.log(`round ${String(round).padStart(2)}: ${result.controllers} controller(s), killed ${fmt(result.killAfterMs)} after deploy (${result.statusAtKill}), converged ${fmt(result.convergedMs)} (replacement up after ${result.replacementReadyMs === null ? '?' : fmt(result.replacementReadyMs)})  ${verdict}`);
  };
  for (let round = 1; round <= rounds; round++) await run(round);
  if (dualRounds > 0) await rig.useControllers(2);
  for (let round = rounds + 1; round <= rounds + dualRounds; round++) await run(round);

  const converged = results.map((r) => r.convergedMs);
  const failed = results.filter((r) => r.problems.length);
  if (converged.length) console.log(`converged after the kill: p50 ${fmt(percentile(converged, 50))}, max ${fmt(Math.max(...converged))}`);
  console.log(`${results.length - failed.length}/${results.length} rounds converged: ${failed.length ? 'FAIL' : 'PASS'}`);
}

let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= rig ? rig.close() : Promise.resolve();
  return cleaning;
}

await runBench(main, cleanUp);
