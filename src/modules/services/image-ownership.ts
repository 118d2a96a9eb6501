// Images Convoy builds live in its own namespace, `convoy/<organization>/<service>:<build>`, locally and
// in the cluster's registry. Anyone who names one can run it, so a tenant may only name images its own
// organization built; everything outside that namespace is an ordinary image reference.
import type { Db } from '../../platform/db/client.js';
import type { Config } from '../../config.js';
import { NotFoundError } from '../common/errors.js';

export const CONVOY_IMAGE_NAMESPACE = 'convoy/';

/** Where Convoy tags what it builds (see the build runner), under REGISTRY_URL when images are pushed. */
export function builtImageTag(organizationId: string, serviceId: string, buildId: string): string {
  return `${CONVOY_IMAGE_NAMESPACE}${organizationId.toLowerCase()}/${serviceId.toLowerCase()}:${buildId.toLowerCase()}`;
}

/** Docker's rule: a first component with a dot or a port, or "localhost", names a registry host. */
function splitRegistryHost(image: string): { host: string | null; path: string } {
  const slash = image.indexOf('/');
  const first = slash < 0 ? '' : image.slice(0, slash);
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost')) return { host: first.toLowerCase(), path: image.slice(slash + 1) };
  return { host: null, path: image };
}

/**
 * The reference's path inside Convoy's namespace (`convoy/...`), or null when it is outside it. Any
 * registry host counts, not only REGISTRY_URL's: the same registry answers under other names (an IP
 * address, an alias), and a name Docker normalises (docker.io/convoy/x) is the local tag convoy/x.
 */
export function convoyImagePath(image: string, registryUrl: string | null): string | null {
  const { path } = splitRegistryHost(image);
  const registryPath = registryUrl ? splitRegistryHost(registryUrl.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '') + '/').path : '';
  for (const candidate of [path, registryPath && path.startsWith(registryPath) ? path.slice(registryPath.length) : null]) {
    if (candidate?.startsWith(CONVOY_IMAGE_NAMESPACE)) return candidate;
  }
  return null;
}

/**
 * Refuses an image in Convoy's namespace unless one of the organization's builds produced it; returns
 * that build. Another organization's image is refused exactly like one that does not exist.
 */
export async function assertImageUsable(
  deps: { db: Db; config: Pick<Config, 'build'> },
  organizationId: string,
  image: string,
): Promise<{ buildId: string } | null> {
  const registryUrl = deps.config.build.registryUrl;
  const path = convoyImagePath(image, registryUrl);
  if (!path) return null;
  const builds = await deps.db.build.findMany({
    where: { service: { organizationId }, imageRef: { endsWith: path } },
    select: { id: true, imageRef: true },
    orderBy: { createdAt: 'desc' },
    take: 10,
  });
  const built = builds.find((b) => b.imageRef && convoyImagePath(b.imageRef, registryUrl) === path);
  if (!built) throw new NotFoundError('Image', image.slice(0, 512));
  return { buildId: built.id };
}
