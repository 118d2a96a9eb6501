-- AlterEnum
ALTER TYPE "WorkerJobKind" ADD VALUE 'EVALUATE';
