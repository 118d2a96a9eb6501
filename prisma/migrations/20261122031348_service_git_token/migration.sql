-- AlterTable
ALTER TABLE "Service" ADD COLUMN     "gitTokenEnc" TEXT;
