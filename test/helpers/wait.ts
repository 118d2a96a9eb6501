// Polling for a condition that becomes true a little later (a write behind an answer, a Swarm task, a process).

/** Waits until `condition` holds, polling; fails with `what` after the timeout. */
export async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 10_000, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
