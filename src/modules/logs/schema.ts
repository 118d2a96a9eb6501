import { builder } from '../../graphql/builder.js';
import { actorOf } from '../common/graphql.js';
import type { GraphQLContext } from '../../graphql/context.js';
import * as logs from './service.js';

/** Aborted when the HTTP client goes away (Yoga's Fetch request); WebSocket operations end by return(). */
function requestSignalOf(ctx: GraphQLContext): AbortSignal | undefined {
  return (ctx as GraphQLContext & { request?: Request }).request?.signal;
}

const TASKS_COVERED =
  'Lines come from the tasks meant to run now and from the current deployment’s tasks that exited by themselves (a crash); ' +
  'tasks Swarm shut down (replaced by a redeploy or a restart, removed by a scale-down) count only when `since` reaches back to when they ran';

const LogStreamEnum = builder.enumType('LogStream', { values: ['stdout', 'stderr'] as const });

const LogLineRef = builder.objectRef<logs.LogEntry>('LogLine').implement({
  fields: (t) => ({
    timestamp: t.field({ type: 'DateTime', resolve: (l) => l.timestamp }),
    stream: t.field({ type: LogStreamEnum, resolve: (l) => l.stream }),
    taskId: t.exposeString('taskId'),
    replica: t.exposeInt('replica', { nullable: true, description: 'The task slot (replica number)' }),
    line: t.exposeString('line'),
  }),
});

builder.queryField('serviceLogLines', (t) =>
  t.field({
    type: [LogLineRef],
    description: `The newest \`limit\` (default 1000) runtime log lines of a service in a time range, oldest first. With \`since\` or \`until\`, every task alive in the range counts. ${TASKS_COVERED}.`,
    authScopes: { member: true },
    args: { serviceId: t.arg.id({ required: true }), since: t.arg({ type: 'DateTime' }), until: t.arg({ type: 'DateTime' }), search: t.arg.string(), limit: t.arg.int() },
    resolve: (_root, args, ctx) => logs.readServiceLogs(ctx.app, actorOf(ctx), String(args.serviceId), args, requestSignalOf(ctx)),
  }),
);

builder.subscriptionField('serviceLogs', (t) =>
  t.field({
    type: LogLineRef,
    description: `Follows the runtime logs of a service: its last \`tail\` lines (of the service as a whole, not per task), then new lines of every running task, including tasks started later. ${TASKS_COVERED}.`,
    authScopes: { member: true },
    args: { serviceId: t.arg.id({ required: true }), tail: t.arg.int({ defaultValue: 100 }), since: t.arg({ type: 'DateTime' }), search: t.arg.string() },
    subscribe: (_root, args, ctx) => logs.followServiceLogs(ctx.app, actorOf(ctx), String(args.serviceId), args, requestSignalOf(ctx)),
    resolve: (line) => line,
  }),
);
