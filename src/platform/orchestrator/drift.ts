// Drift: where what Swarm runs differs from the spec Convoy would apply. A pure comparison, so the rules
// (what Swarm normalises, what Convoy itself changes outside a deploy) are tested without Swarm.
import { EXCLUDED_NODES_LABEL, type OwnedSpec, type ServiceNetwork, type ServicePort, type SwarmServiceSpec } from './orchestrator.js';

export type DriftField = 'replicas' | 'image' | 'env' | 'labels' | 'containerLabels' | 'networks' | 'ports' | 'constraints';

/** A digest Swarm (or `docker service update`) pinned to the tag counts as the same image. */
function withoutDigest(observed: string, desired: string): string {
  return desired.includes('@') ? observed : observed.replace(/@sha256:[0-9a-f]+$/, '');
}

function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && a[key] === b[key]);
}

const networksKey = (networks: ServiceNetwork[]) =>
  JSON.stringify(networks.map((n) => [n.name, [...n.aliases].sort()]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))));

const portsKey = (ports: ServicePort[]) =>
  JSON.stringify(ports.map((p) => `${p.target}/${p.protocol}/${p.published ?? ''}/${p.publishMode}`).sort());

const constraint = (c: string) => c.replace(/\s+/g, '');

/**
 * The fields in which `observed` differs from `desired` (empty: no drift). The node exclusions failover
 * keeps (the `node.id!=` constraints listed in EXCLUDED_NODES_LABEL, and that label) are Convoy's own and
 * never count; health check, resources and update policy are not compared.
 */
export function specDrift(desired: SwarmServiceSpec | OwnedSpec, observed: OwnedSpec): DriftField[] {
  const drift: DriftField[] = [];
  if (observed.replicas !== desired.replicas) drift.push('replicas');
  if (withoutDigest(observed.image, desired.image) !== desired.image) drift.push('image');
  if (!sameRecord(observed.env, desired.env)) drift.push('env');
  const { [EXCLUDED_NODES_LABEL]: excludedLabel, ...observedLabels } = observed.labels;
  const { [EXCLUDED_NODES_LABEL]: _ignored, ...desiredLabels } = desired.labels;
  if (!sameRecord(observedLabels, desiredLabels)) drift.push('labels');
  if (!sameRecord(observed.containerLabels, desired.containerLabels)) drift.push('containerLabels');
  if (networksKey(observed.networks) !== networksKey(desired.networks)) drift.push('networks');
  if (portsKey(observed.ports) !== portsKey(desired.ports)) drift.push('ports');
  const exclusions = new Set((excludedLabel ?? '').split(',').filter(Boolean).map((id) => `node.id!=${id}`));
  const observedConstraints = observed.placementConstraints.map(constraint).filter((c) => !exclusions.has(c)).sort();
  const desiredConstraints = desired.placementConstraints.map(constraint).sort();
  if (observedConstraints.join('\n') !== desiredConstraints.join('\n')) drift.push('constraints');
  return drift;
}
