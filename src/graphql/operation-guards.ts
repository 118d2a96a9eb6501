// Checks on a whole operation before it runs, for HTTP, SSE and WebSocket alike (envelop hooks).
import { GraphQLError, visit, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Config } from '../config.js';
import type { GraphQLContext } from './context.js';
import { hasUnstorableCharacters, UNSTORABLE_MESSAGE as PROBLEM } from '../modules/common/parse.js';

// Every string an operation carries (variables, object keys, literals in the query) is checked once, here.

function badInput(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}

/** The path of the first unstorable string (or object key) in the variables, or null. */
function unstorableVariable(variables: unknown): string | null {
  if (!variables || typeof variables !== 'object') return null;
  // Iterative: a deeply nested JSON body must not overflow the stack.
  const stack: { value: unknown; path: string }[] = [{ value: variables, path: '' }];
  while (stack.length) {
    const { value, path } = stack.pop()!;
    if (typeof value === 'string') {
      if (hasUnstorableCharacters(value)) return path;
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => stack.push({ value: item, path: `${path}[${i}]` }));
    } else if (value && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) {
        const child = path ? `${path}.${key.slice(0, 64)}` : key.slice(0, 64);
        if (hasUnstorableCharacters(key)) return child;
        stack.push({ value: item, path: child });
      }
    }
  }
  return null;
}

const literalChecks = new WeakMap<DocumentNode, boolean>();

/** Whether a string literal in the document is unstorable; cached, as Yoga reuses parsed documents. */
function hasUnstorableLiteral(document: DocumentNode): boolean {
  let found = literalChecks.get(document);
  if (found === undefined) {
    found = false;
    visit(document, {
      StringValue(node) {
        if (hasUnstorableCharacters(node.value)) found = true;
      },
    });
    literalChecks.set(document, found);
  }
  return found;
}

function refusal(document: DocumentNode, variables: unknown): GraphQLError | null {
  const path = unstorableVariable(variables);
  if (path !== null) return badInput(`Variable "$${path}" ${PROBLEM}`);
  if (hasUnstorableLiteral(document)) return badInput(`A string in the query ${PROBLEM}`);
  return null;
}

export function storableStringsPlugin(): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = refusal(args.document, args.variableValues);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = refusal(args.document, args.variableValues);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

const introspects = new WeakMap<DocumentNode, boolean>();

function selectsIntrospection(document: DocumentNode): boolean {
  let found = introspects.get(document);
  if (found === undefined) {
    found = false;
    visit(document, {
      Field(node) {
        if (node.name.value === '__schema' || node.name.value === '__type') found = true;
      },
    });
    introspects.set(document, found);
  }
  return found;
}

/**
 * Who may see the schema (CONVOY_INTROSPECTION). Checked at execution, where the caller is known;
 * `__typename` is not introspection and stays allowed.
 */
export function introspectionPlugin(mode: Config['http']['introspection']): Plugin {
  if (mode === 'anonymous') return {};
  return {
    onExecute({ args, setResultAndStopExecution }) {
      if (!selectsIntrospection(args.document)) return;
      const caller = (args.contextValue as Partial<GraphQLContext>).caller;
      if (mode === 'off') {
        setResultAndStopExecution({ errors: [new GraphQLError('Introspection is disabled on this server', { extensions: { code: 'FORBIDDEN' } })] });
      } else if (!caller || caller.kind === 'anonymous') {
        setResultAndStopExecution({ errors: [new GraphQLError('Introspection requires authentication', { extensions: { code: 'UNAUTHENTICATED' } })] });
      }
    },
  };
}
