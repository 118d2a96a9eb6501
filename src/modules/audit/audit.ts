import type { Db } from '../../platform/db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';

export type AuditActor = { userId?: string | null; workerId?: string | null; organizationId?: string | null; requestId?: string | null };

/** Records who did what to which resource. Called inside the same transaction as the change where possible. */
export async function recordAudit(
  db: Db | Prisma.TransactionClient,
  actor: AuditActor,
  action: string,
  resourceType: string,
  resourceId: string | null,
  metadata: Record<string, unknown> = {},
): Promise<void> {
  await db.auditLogEntry.create({
    data: {
      organizationId: actor.organizationId ?? null,
      actorUserId: actor.userId ?? null,
      actorWorkerId: actor.workerId ?? null,
      action,
      resourceType,
      resourceId,
      metadata: metadata as Prisma.InputJsonValue,
      requestId: actor.requestId ?? null,
    },
  });
}
