-- CreateEnum
CREATE TYPE "WorkerJobKind" AS ENUM ('BUILD');

-- CreateEnum
CREATE TYPE "WorkerJobStatus" AS ENUM ('QUEUED', 'CLAIMED', 'SUCCEEDED', 'FAILED', 'CANCELLED');

-- CreateEnum
CREATE TYPE "ServiceMigrationStatus" AS ENUM ('MIGRATING', 'MIGRATED', 'WAITING_FOR_OWNER', 'LEFT_ALONE', 'FAILED');

-- AlterEnum
ALTER TYPE "ServiceStatus" ADD VALUE 'DEGRADED';

-- AlterTable
ALTER TABLE "Build" ADD COLUMN     "logLineCount" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "Worker" ADD COLUMN     "agentSession" TEXT;

-- CreateTable
CREATE TABLE "WorkerJob" (
    "id" TEXT NOT NULL,
    "kind" "WorkerJobKind" NOT NULL,
    "buildId" TEXT,
    "status" "WorkerJobStatus" NOT NULL DEFAULT 'QUEUED',
    "payload" JSONB NOT NULL,
    "attempt" INTEGER NOT NULL DEFAULT 0,
    "maxAttempts" INTEGER NOT NULL DEFAULT 3,
    "workerId" TEXT,
    "agentSession" TEXT,
    "claimedAt" TIMESTAMP(3),
    "cancelRequestedAt" TIMESTAMP(3),
    "result" JSONB,
    "error" TEXT,
    "finishedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "WorkerJob_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ServiceMigration" (
    "id" TEXT NOT NULL,
    "serviceId" TEXT NOT NULL,
    "workerId" TEXT,
    "policy" "MigrationPolicy" NOT NULL,
    "status" "ServiceMigrationStatus" NOT NULL,
    "fromNodeId" TEXT,
    "moves" JSONB NOT NULL DEFAULT '[]',
    "message" TEXT NOT NULL DEFAULT '',
    "finishedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "ServiceMigration_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "WorkerJob_buildId_key" ON "WorkerJob"("buildId");

-- CreateIndex
CREATE INDEX "WorkerJob_status_createdAt_idx" ON "WorkerJob"("status", "createdAt");

-- CreateIndex
CREATE INDEX "WorkerJob_workerId_status_idx" ON "WorkerJob"("workerId", "status");

-- CreateIndex
CREATE INDEX "ServiceMigration_serviceId_createdAt_idx" ON "ServiceMigration"("serviceId", "createdAt");

-- CreateIndex
CREATE INDEX "ServiceMigration_workerId_idx" ON "ServiceMigration"("workerId");

-- CreateIndex
CREATE INDEX "ServiceMigration_status_idx" ON "ServiceMigration"("status");

-- AddForeignKey
ALTER TABLE "WorkerJob" ADD CONSTRAINT "WorkerJob_buildId_fkey" FOREIGN KEY ("buildId") REFERENCES "Build"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "WorkerJob" ADD CONSTRAINT "WorkerJob_workerId_fkey" FOREIGN KEY ("workerId") REFERENCES "Worker"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ServiceMigration" ADD CONSTRAINT "ServiceMigration_serviceId_fkey" FOREIGN KEY ("serviceId") REFERENCES "Service"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ServiceMigration" ADD CONSTRAINT "ServiceMigration_workerId_fkey" FOREIGN KEY ("workerId") REFERENCES "Worker"("id") ON DELETE SET NULL ON UPDATE CASCADE;
