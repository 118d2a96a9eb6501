import { describe, expect, it } from 'vitest';
import { specDrift } from './drift.js';
import { EXCLUDED_NODES_LABEL, type OwnedSpec } from './orchestrator.js';

const desired: OwnedSpec = {
  image: 'convoy/app:1',
  env: { A: '1', B: 'two=2' },
  replicas: 2,
  labels: { 'convoy.managed': 'true', 'convoy.service-id': 's1' },
  containerLabels: { 'convoy.deployment-id': 'd1' },
  networks: [{ name: 'convoy-org-o1', aliases: ['web'] }],
  ports: [{ target: 8080, published: 9000, protocol: 'tcp', publishMode: 'host' }],
  placementConstraints: [],
};

describe('specDrift', () => {
  it('finds nothing when Swarm has what Convoy applied, in any order', () => {
    expect(specDrift(desired, { ...desired, env: { B: 'two=2', A: '1' } })).toEqual([]);
  });

  it('names each drifted field', () => {
    expect(specDrift(desired, { ...desired, replicas: 3 })).toEqual(['replicas']);
    expect(specDrift(desired, { ...desired, env: { A: '1', B: 'two=2', C: 'x' } })).toEqual(['env']);
    expect(specDrift(desired, { ...desired, env: { A: '2', B: 'two=2' } })).toEqual(['env']);
    expect(specDrift(desired, { ...desired, image: 'convoy/app:2' })).toEqual(['image']);
    expect(specDrift(desired, { ...desired, labels: { ...desired.labels, extra: 'x' } })).toEqual(['labels']);
    expect(specDrift(desired, { ...desired, containerLabels: { 'convoy.deployment-id': 'd0' } })).toEqual(['containerLabels']);
    expect(specDrift(desired, { ...desired, networks: [] })).toEqual(['networks']);
    expect(specDrift(desired, { ...desired, ports: [] })).toEqual(['ports']);
    expect(specDrift(desired, { ...desired, placementConstraints: ['node.role==manager'] })).toEqual(['constraints']);
    expect(specDrift(desired, { ...desired, replicas: 1, image: 'other' })).toEqual(['replicas', 'image']);
  });

  it('takes a digest Swarm pinned to the tag for the same image', () => {
    expect(specDrift(desired, { ...desired, image: `convoy/app:1@sha256:${'a'.repeat(64)}` })).toEqual([]);
    expect(specDrift({ ...desired, image: `convoy/app@sha256:${'a'.repeat(64)}` }, { ...desired, image: `convoy/app@sha256:${'b'.repeat(64)}` })).toEqual(['image']);
  });

  it("ignores failover's node exclusions, which are Convoy's own", () => {
    const excluded = { ...desired, labels: { ...desired.labels, [EXCLUDED_NODES_LABEL]: 'n1,n2' }, placementConstraints: ['node.id!=n1', 'node.id != n2'] };
    expect(specDrift(desired, excluded)).toEqual([]);
    // A constraint that is not one of the recorded exclusions is drift.
    expect(specDrift(desired, { ...excluded, placementConstraints: [...excluded.placementConstraints, 'node.id!=n3'] })).toEqual(['constraints']);
  });

  it('compares network aliases as sets and constraints without whitespace', () => {
    const spec = { ...desired, networks: [{ name: 'n', aliases: ['a', 'b'] }], placementConstraints: ['node.role==worker'] };
    expect(specDrift(spec, { ...spec, networks: [{ name: 'n', aliases: ['b', 'a'] }], placementConstraints: ['node.role == worker'] })).toEqual([]);
  });
});
