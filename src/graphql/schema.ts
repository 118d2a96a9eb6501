// Imports every module's types, then prints one schema. Adding a module = adding one import here.
import { lexicographicSortSchema, printSchema } from 'graphql';
import { builder } from './builder.js';
import './scalars.js';
import './errors.js';
import '../modules/auth/schema.js';
import '../modules/organizations/schema.js';
import '../modules/services/schema.js';
import '../modules/deployments/schema.js';
import '../modules/logs/schema.js';
import '../modules/builds/schema.js';
import '../modules/audit/schema.js';
import '../modules/templates/schema.js';
import '../modules/workers/schema.js';
import '../modules/workers/failover-schema.js';
import '../modules/builds/agent-jobs-schema.js';

export const schema = builder.toSchema({ sortSchema: true });

/** The SDL committed as schema/schema.graphql (printed with the same graphql instance as the schema). */
export function printSchemaSDL(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
