// The node metrics a worker agent reports with every heartbeat: one definition for the agent, the
// API's heartbeat handling and its events.
export type NodeMetricValues = {
  cpuPercent: number;
  memoryUsedMb: number;
  memoryTotalMb: number;
  diskUsedGb: number;
  diskTotalGb: number;
  load1: number;
};
