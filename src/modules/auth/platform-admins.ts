// Platform admins operate the installation (workers, join tokens) across every organization.
import type { Db } from '../../platform/db/client.js';

/** A platform admin acting on the installation: what cluster-wide service functions take. */
export type PlatformAdmin = { userId: string; requestId: string };

export async function isPlatformAdmin(db: Db, userId: string): Promise<boolean> {
  const user = await db.user.findUnique({ where: { id: userId }, select: { platformAdmin: true } });
  return user?.platformAdmin ?? false;
}

/** scope-auth's lazy loader for the `platformAdmin` scope: only fields that need it pay for the query. */
export function platformAdminLoader(db: Db, userId: string): () => Promise<boolean> {
  return () => isPlatformAdmin(db, userId);
}

export async function platformAdminIds(db: Db): Promise<string[]> {
  const admins = await db.user.findMany({ where: { platformAdmin: true }, select: { id: true } });
  return admins.map((a) => a.id);
}
