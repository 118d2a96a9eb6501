// Writes the printed SDL to schema/schema.graphql; with --check, fails when the file has drifted.
import { readFile, writeFile } from 'node:fs/promises';
import { printSchemaSDL } from '../src/graphql/schema.js';

const target = new URL('../schema/schema.graphql', import.meta.url);
const printed = printSchemaSDL();
if (process.argv.includes('--check')) {
  const committed = await readFile(target, 'utf8').catch(() => '');
  if (committed !== printed) {
    console.error('schema/schema.graphql is out of date: run `npm run schema:print`');
    process.exit(1);
  }
  console.log('schema/schema.graphql is up to date');
} else {
  await writeFile(target, printed);
  console.log('wrote schema/schema.graphql');
}
