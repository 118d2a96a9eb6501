// Which queued builds start next: round-robin between organizations, each under its own concurrency
// limit, first come first served within an organization. Pure: the admission step (admission.ts)
// reads the state from PostgreSQL and acts on the answer.

export type QueuedBuildRef = { id: string; organizationId: string; queuedAt: Date };

export type BuildQueueState = {
  /** Builds waiting to start (any order). */
  queued: QueuedBuildRef[];
  /** Builds running now, per organization. */
  runningByOrganization: ReadonlyMap<string, number>;
  /** When each organization last had a build start (absent: not recently). */
  lastStartedAt: ReadonlyMap<string, Date>;
  perOrganizationLimit: number;
  /** How many builds may start now. */
  slots: number;
};

/**
 * The builds to start now, in order. Each turn goes to the organization under its limit with the
 * fewest builds running, then the one that has waited longest since its last start, then the one
 * whose oldest build was queued first; it starts that organization's oldest queued build. An
 * organization with a long (or stuck) build therefore never holds back another's.
 */
export function buildsToStart(state: BuildQueueState): QueuedBuildRef[] {
  const byOrganization = new Map<string, QueuedBuildRef[]>();
  for (const build of [...state.queued].sort(byQueueOrder)) {
    const list = byOrganization.get(build.organizationId) ?? [];
    list.push(build);
    byOrganization.set(build.organizationId, list);
  }
  const running = new Map(state.runningByOrganization);
  // A start picked in this call counts as later than any recorded one, in the order picked.
  const lastStart = new Map<string, number>([...state.lastStartedAt].map(([org, at]) => [org, at.getTime()]));
  let picks = 0;
  const started: QueuedBuildRef[] = [];
  while (started.length < state.slots) {
    let best: { organizationId: string; head: QueuedBuildRef } | null = null;
    for (const [organizationId, list] of byOrganization) {
      const head = list[0];
      if (!head || (running.get(organizationId) ?? 0) >= state.perOrganizationLimit) continue;
      if (!best || deserves(organizationId, head, best.organizationId, best.head)) best = { organizationId, head };
    }
    if (!best) break;
    byOrganization.get(best.organizationId)!.shift();
    running.set(best.organizationId, (running.get(best.organizationId) ?? 0) + 1);
    lastStart.set(best.organizationId, Number.MAX_SAFE_INTEGER - 1_000_000 + picks++);
    started.push(best.head);
  }
  return started;

  function deserves(org: string, head: QueuedBuildRef, otherOrg: string, otherHead: QueuedBuildRef): boolean {
    const load = (running.get(org) ?? 0) - (running.get(otherOrg) ?? 0);
    if (load !== 0) return load < 0;
    const since = (lastStart.get(org) ?? -Infinity) - (lastStart.get(otherOrg) ?? -Infinity);
    if (since !== 0 && !Number.isNaN(since)) return since < 0;
    return byQueueOrder(head, otherHead) < 0;
  }
}

function byQueueOrder(a: QueuedBuildRef, b: QueuedBuildRef): number {
  return a.queuedAt.getTime() - b.queuedAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
