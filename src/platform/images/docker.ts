// Getting a written image into Docker: load it on this node, and push it to the cluster's registry
// (REGISTRY_URL) so other nodes can pull it.
import type Docker from 'dockerode';
import { createReadStream } from 'node:fs';

export interface ImageReference {
  /** Repository, registry host included when there is one: "registry:5000/org/app". */
  repository: string;
  tag: string;
}

// Docker's grammar, a little stricter: lower-case path components, optional registry host[:port].
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]{1,5})?$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export class ImageError extends Error {}

/** Parses "repo[:tag]" (tag defaults to latest); throws ImageError on anything Docker would refuse. */
export function parseImageReference(reference: string): ImageReference {
  const lastSlash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  const hasTag = colon > lastSlash;
  const repository = hasTag ? reference.slice(0, colon) : reference;
  const tag = hasTag ? reference.slice(colon + 1) : 'latest';
  const parts = repository.split('/');
  const host = hasRegistryHost(parts) ? parts.shift() : undefined;
  const valid = TAG.test(tag) && parts.every((p) => PATH_COMPONENT.test(p)) && (host === undefined || HOST.test(host)) && repository.length <= 255;
  if (!valid) throw new ImageError(`invalid image reference: ${JSON.stringify(reference)}`);
  return { repository, tag };
}

/** Docker's rule: a first component with a dot or a port, or "localhost", names a registry. */
function hasRegistryHost(parts: string[]): boolean {
  return parts.length > 1 && /[.:]|^localhost$/.test(parts[0]);
}

function withoutRegistryHost(repository: string): string {
  const parts = repository.split('/');
  return (hasRegistryHost(parts) ? parts.slice(1) : parts).join('/');
}

export function formatImageReference(reference: ImageReference): string {
  return `${reference.repository}:${reference.tag}`;
}

interface ProgressEvent {
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { Digest?: string };
}

/** Loads a docker-archive into the engine and tags it; returns the image id Docker assigned. */
export async function loadImage(docker: Docker, archive: string | NodeJS.ReadableStream, tag: string): Promise<{ imageId: string; tag: string }> {
  const reference = parseImageReference(tag);
  const input = typeof archive === 'string' ? createReadStream(archive) : archive;
  const events = await followProgress(docker, await docker.loadImage(input));
  const loaded = events.map((e) => /Loaded image ID: (sha256:[0-9a-f]{64})/.exec(e.stream ?? '')?.[1]).find(Boolean);
  if (!loaded) throw new ImageError(`docker load did not report an image id: ${events.map((e) => e.stream ?? e.status ?? '').join(' ').trim()}`);
  await docker.getImage(loaded).tag({ repo: reference.repository, tag: reference.tag });
  return { imageId: loaded, tag: formatImageReference(reference) };
}

/**
 * Tags `tag` under the registry and pushes it; returns the pushed reference and its digest.
 * `registryUrl` is a host[:port] (a scheme is tolerated and dropped).
 */
export async function pushImage(
  docker: Docker,
  tag: string,
  registryUrl: string,
  auth?: { username: string; password: string },
): Promise<{ reference: string; digest: string | undefined }> {
  const local = parseImageReference(tag);
  const registryHost = registryUrl.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
  const remote = parseImageReference(`${registryHost}/${withoutRegistryHost(local.repository)}:${local.tag}`);
  await docker.getImage(formatImageReference(local)).tag({ repo: remote.repository, tag: remote.tag });
  const image = docker.getImage(formatImageReference(remote));
  const stream = await image.push({ tag: remote.tag, ...(auth ? { authconfig: { ...auth, serveraddress: registryHost } } : {}) });
  const events = await followProgress(docker, stream);
  const digest = events.map((e) => e.aux?.Digest).find(Boolean);
  return { reference: formatImageReference(remote), digest };
}

/** Collects a Docker progress stream; progress streams report failures as events, not HTTP errors. */
async function followProgress(docker: Docker, stream: NodeJS.ReadableStream): Promise<ProgressEvent[]> {
  const events = await new Promise<ProgressEvent[]>((resolve, reject) => {
    docker.modem.followProgress(stream, (error: Error | null, output: ProgressEvent[]) => (error ? reject(error) : resolve(output)));
  });
  const failed = events.find((e) => e.error || e.errorDetail);
  if (failed) throw new ImageError(failed.errorDetail?.message ?? failed.error ?? 'docker reported an error');
  return events;
}

/**
 * Removes a local image; false when a running container uses it (or it was already gone). Stopped
 * containers (Swarm's task history) do not keep it: `force` untags it all the same.
 */
export async function removeImage(docker: Docker, reference: string): Promise<boolean> {
  try {
    await docker.getImage(reference).remove({ force: true });
    return true;
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 404 || status === 409) return false;
    throw error;
  }
}
