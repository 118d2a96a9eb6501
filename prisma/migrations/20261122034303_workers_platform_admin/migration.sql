-- DropIndex
DROP INDEX "Worker_hostname_key";

-- DropIndex
DROP INDEX "Worker_swarmNodeId_key";

-- AlterTable
ALTER TABLE "User" ADD COLUMN     "platformAdmin" BOOLEAN NOT NULL DEFAULT false;


-- Hostnames and Swarm node ids are unique among workers that are not removed (Prisma cannot express partial indexes).
CREATE UNIQUE INDEX "Worker_hostname_live_key" ON "Worker"("hostname") WHERE "removedAt" IS NULL;

CREATE UNIQUE INDEX "Worker_swarmNodeId_live_key" ON "Worker"("swarmNodeId") WHERE "removedAt" IS NULL;
