// The API steps build tests share: a join token for an agent that builds, a service that builds from
// source, a build of it.
import { expect } from 'vitest';
import type { TestApi } from './api.js';

/** Creates a service through the API; fails the test with the API's answer when it is not a Service. */
export async function createServiceThroughApi(api: TestApi, token: string, input: Record<string, unknown>): Promise<string> {
  const created = await api.gql(
    `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`,
    { i: input },
    { token },
  );
  expect(created.data.createService.__typename, JSON.stringify(created)).toBe('Service');
  return created.data.createService.id as string;
}

/** Queues a build of the service through the API and returns its id. */
export async function startBuildThroughApi(api: TestApi, token: string, serviceId: string): Promise<string> {
  const result = await api.gql(`mutation($s: ID!) { buildService(serviceId: $s) { __typename ... on Build { id } } }`, { s: serviceId }, { token });
  expect(result.data.buildService.__typename, JSON.stringify(result)).toBe('Build');
  return result.data.buildService.id as string;
}

/** A platform admin's join token for a new worker agent (10 minutes). */
export async function joinTokenThroughApi(api: TestApi, adminToken: string): Promise<string> {
  const result = await api.gql(`mutation { createWorkerJoinToken(ttlSeconds: 600) { ... on CreateWorkerJoinTokenPayload { token } } }`, {}, { token: adminToken });
  expect(result.data?.createWorkerJoinToken?.token, JSON.stringify(result)).toBeTruthy();
  return result.data.createWorkerJoinToken.token as string;
}
