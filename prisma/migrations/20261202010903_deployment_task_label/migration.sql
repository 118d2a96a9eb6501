-- AlterTable
ALTER TABLE "Deployment" ADD COLUMN     "taskLabel" TEXT;
