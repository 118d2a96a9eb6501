-- AlterEnum
ALTER TYPE "DeploymentStatus" ADD VALUE 'COMPLETED';
