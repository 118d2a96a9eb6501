// Runs `prisma generate` offline. The CLI insists on locating a native schema engine even though
// generate never runs it, and it cannot download one here, so point it at any executable.
import { execa } from 'execa';
import { existsSync } from 'node:fs';

const env = { ...process.env };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY || !existsSync(env.PRISMA_SCHEMA_ENGINE_BINARY)) {
  env.PRISMA_SCHEMA_ENGINE_BINARY = process.execPath;
}
env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
env.CHECKPOINT_DISABLE = '1';
await execa('npx', ['prisma', 'generate'], { env, stdio: 'inherit' });
