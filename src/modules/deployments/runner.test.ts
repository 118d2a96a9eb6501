// A failed rollout's reason is said once: the service's status reads "deployment X failed: 3 tasks failed; ...",
// not "deployment X failed: failed: 3 tasks failed; ...".
import { describe, expect, it } from 'vitest';
import { rolloutFailureReason } from './runner.js';

describe('rolloutFailureReason', () => {
  it('gives a plain failure as Swarm’s reason, with no second "failed"', () => {
    const reason = rolloutFailureReason({ outcome: 'failed', reason: '3 tasks failed; last: task exited with code 1' });
    expect(reason).toBe('3 tasks failed; last: task exited with code 1');
    expect(`deployment d1 failed: ${reason}`).not.toMatch(/failed: failed/);
  });

  it('names what happened when the outcome adds something', () => {
    expect(rolloutFailureReason({ outcome: 'rolled_back', reason: 'update paused' })).toBe('rolled back: update paused');
    expect(rolloutFailureReason({ outcome: 'timeout', reason: '0/2 replicas running' })).toBe('not healthy before the deadline: 0/2 replicas running');
  });
});
