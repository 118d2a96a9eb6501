-- CreateEnum
CREATE TYPE "CustomDomainStatus" AS ENUM ('PENDING', 'VERIFIED', 'FAILED');

-- CreateTable
CREATE TABLE "CustomDomain" (
    "id" TEXT NOT NULL,
    "serviceId" TEXT NOT NULL,
    "domain" TEXT NOT NULL,
    "status" "CustomDomainStatus" NOT NULL DEFAULT 'PENDING',
    "verifiedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "CustomDomain_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "RegistryCredential" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "registry" TEXT NOT NULL,
    "username" TEXT NOT NULL,
    "passwordEnc" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "RegistryCredential_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "CustomDomain_domain_key" ON "CustomDomain"("domain");

-- CreateIndex
CREATE INDEX "CustomDomain_serviceId_idx" ON "CustomDomain"("serviceId");

-- CreateIndex
CREATE UNIQUE INDEX "RegistryCredential_organizationId_registry_key" ON "RegistryCredential"("organizationId", "registry");

-- AddForeignKey
ALTER TABLE "CustomDomain" ADD CONSTRAINT "CustomDomain_serviceId_fkey" FOREIGN KEY ("serviceId") REFERENCES "Service"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "RegistryCredential" ADD CONSTRAINT "RegistryCredential_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "Organization"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Existing claims move over as PENDING (none was ever verified). Where two live services claimed one
-- domain, the earliest claim keeps it.
INSERT INTO "CustomDomain" ("id", "serviceId", "domain", "status", "createdAt", "updatedAt")
SELECT md5(s."id" || ':' || d.domain), s."id", d.domain, 'PENDING', s."createdAt", CURRENT_TIMESTAMP
FROM "Service" s CROSS JOIN LATERAL unnest(s."customDomains") AS d(domain)
WHERE s."deletedAt" IS NULL
ORDER BY s."createdAt"
ON CONFLICT ("domain") DO NOTHING;

-- AlterTable
ALTER TABLE "Service" DROP COLUMN "customDomains";
