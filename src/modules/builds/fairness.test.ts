import { describe, expect, it } from 'vitest';
import { buildsToStart, type BuildQueueState, type QueuedBuildRef } from './fairness.js';

const at = (second: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, second));
const build = (id: string, organizationId: string, second: number): QueuedBuildRef => ({ id, organizationId, queuedAt: at(second) });

function ids(state: Partial<BuildQueueState> & Pick<BuildQueueState, 'queued'>) {
  return buildsToStart({ runningByOrganization: new Map(), lastStartedAt: new Map(), perOrganizationLimit: 1, slots: 10, ...state }).map((b) => b.id);
}

describe('buildsToStart', () => {
  it('takes one build per organization in turn, oldest first within each', () => {
    const queued = [build('a1', 'A', 1), build('a2', 'A', 2), build('a3', 'A', 3), build('b1', 'B', 4), build('c1', 'C', 5), build('b2', 'B', 6)];
    expect(ids({ queued, perOrganizationLimit: 5 })).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
  });

  it('never starts more of one organization than its limit, whatever the free slots', () => {
    const queued = [build('a2', 'A', 2), build('a3', 'A', 3), build('b1', 'B', 4)];
    expect(ids({ queued, runningByOrganization: new Map([['A', 1]]) })).toEqual(['b1']);
    expect(ids({ queued, runningByOrganization: new Map([['A', 1]]), perOrganizationLimit: 2 })).toEqual(['b1', 'a2']);
    expect(ids({ queued, runningByOrganization: new Map([['A', 1], ['B', 1]]) })).toEqual([]);
  });

  it('with one slot, the organization that waited longest since its last start goes first', () => {
    // A queued early and started a build a moment ago; B's build came later but B has not built since.
    const queued = [build('a2', 'A', 2), build('a3', 'A', 3), build('b1', 'B', 9)];
    expect(ids({ queued, slots: 1, lastStartedAt: new Map([['A', at(30)]]) })).toEqual(['b1']);
    expect(ids({ queued, slots: 1, lastStartedAt: new Map([['A', at(30)], ['B', at(40)]]) })).toEqual(['a2']);
    // Fewer running builds beat a longer wait.
    expect(ids({ queued, slots: 1, perOrganizationLimit: 3, runningByOrganization: new Map([['B', 1]]), lastStartedAt: new Map([['A', at(30)]]) })).toEqual(['a2']);
  });

  it('gives nothing when there are no slots or no builds, and does not change its input', () => {
    const queued = [build('b1', 'B', 4), build('a1', 'A', 1)];
    const copy = structuredClone(queued);
    expect(ids({ queued, slots: 0 })).toEqual([]);
    expect(ids({ queued: [] })).toEqual([]);
    expect(ids({ queued })).toEqual(['a1', 'b1']);
    expect(queued).toEqual(copy);
  });
});
