-- AlterTable
ALTER TABLE "Worker" ADD COLUMN     "buildOrganizationIds" TEXT[] DEFAULT ARRAY[]::TEXT[];

-- AlterTable
ALTER TABLE "WorkerJob" ADD COLUMN     "gitCredentialIssuedAt" TIMESTAMP(3),
ADD COLUMN     "organizationId" TEXT;

-- CreateIndex
CREATE INDEX "Build_startedAt_idx" ON "Build"("startedAt");
