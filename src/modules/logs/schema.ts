import { builder } from '../../graphql/builder.js';
import { actorOf } from '../common/graphql.js';
import * as logs from './service.js';

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
    description: 'Runtime log lines of every task of a service in a time range, oldest first',
    authScopes: { member: true },
    args: { serviceId: t.arg.id({ required: true }), since: t.arg({ type: 'DateTime' }), until: t.arg({ type: 'DateTime' }), search: t.arg.string(), limit: t.arg.int() },
    resolve: (_root, args, ctx) => logs.readServiceLogs(ctx.app, actorOf(ctx), String(args.serviceId), args),
  }),
);

builder.subscriptionField('serviceLogs', (t) =>
  t.field({
    type: LogLineRef,
    description: 'Follows the runtime logs of every task of a service: the last `tail` lines, then new ones',
    authScopes: { member: true },
    args: { serviceId: t.arg.id({ required: true }), tail: t.arg.int({ defaultValue: 100 }), since: t.arg({ type: 'DateTime' }), search: t.arg.string() },
    subscribe: (_root, args, ctx) => logs.followServiceLogs(ctx.app, actorOf(ctx), String(args.serviceId), args),
    resolve: (line) => line,
  }),
);
