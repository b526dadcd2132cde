// The AI SDK gateway provider's metadata calls against Meterline, each answer parsed by the
// SDK's own schemas: getSpendReport (every groupBy it offers, and each filter),
// getGenerationInfo for each event id, getCredits (for two teams) and getAvailableModels;
// then the errors it raises as its own classes (a wrong key, a bad parameter, an unknown
// generation). Prints one JSON document with everything the SDK returned.
//
// Usage: METERLINE_URL=http://127.0.0.1:8080 METERLINE_KEY=ml_... METERLINE_OTHER_KEY=ml_...
//   METERLINE_START_DATE=2026-03-01 METERLINE_END_DATE=2026-03-02
//   METERLINE_EVENT_IDS=<id>,<id> METERLINE_OTHER_TEAM_EVENT_ID=<id of the other key's team>
//   METERLINE_FILTERS='[{"groupBy": "model", "userId": "ana"}]' node metadata.mjs
import { createGateway } from '@ai-sdk/gateway';

const env = process.env;
const baseURL = `${env.METERLINE_URL}/v3/ai`;
const gateway = createGateway({ baseURL, apiKey: env.METERLINE_KEY });
const other = createGateway({ baseURL, apiKey: env.METERLINE_OTHER_KEY });
const range = { startDate: env.METERLINE_START_DATE, endDate: env.METERLINE_END_DATE };

// Every groupBy of GatewaySpendReportParams, and the hours of the day grouping.
const groupings = [
  { groupBy: 'day' },
  { groupBy: 'day', datePart: 'hour' },
  { groupBy: 'user' },
  { groupBy: 'model' },
  { groupBy: 'tag' },
  { groupBy: 'provider' },
  { groupBy: 'credential_type' },
];
const filters = JSON.parse(env.METERLINE_FILTERS ?? '[]');

const reports = [];
for (const params of [...groupings, ...filters]) {
  reports.push({ params, results: (await gateway.getSpendReport({ ...range, ...params })).results });
}

const generations = [];
for (const id of (env.METERLINE_EVENT_IDS ?? '').split(',').filter(Boolean)) {
  generations.push(await gateway.getGenerationInfo({ id }));
}

/** What the SDK raised: its class, status and message, or null when nothing was raised. */
async function raised(call) {
  try {
    await call();
    return null;
  } catch (error) {
    return { name: error.name, statusCode: error.statusCode, type: error.type, message: error.message };
  }
}

const stranger = createGateway({ baseURL, apiKey: 'ml_not_a_gateway_key' });
const errors = {
  wrongKey: {
    getSpendReport: await raised(() => stranger.getSpendReport(range)),
    getGenerationInfo: await raised(() => stranger.getGenerationInfo({ id: '00000000-0000-0000-0000-000000000001' })),
    getCredits: await raised(() => stranger.getCredits()),
    getAvailableModels: await raised(() => stranger.getAvailableModels()),
  },
  badDate: await raised(() => gateway.getSpendReport({ ...range, startDate: 'last week' })),
  badId: await raised(() => gateway.getGenerationInfo({ id: 'gen_01HZX' })),
  unknownGeneration: await raised(() => gateway.getGenerationInfo({ id: '00000000-0000-0000-0000-000000000001' })),
  otherTeamsGeneration: await raised(() => gateway.getGenerationInfo({ id: env.METERLINE_OTHER_TEAM_EVENT_ID })),
};

console.log(JSON.stringify({
  reports,
  otherTeamReport: (await other.getSpendReport({ ...range, groupBy: 'user' })).results,
  generations,
  credits: await gateway.getCredits(),
  otherTeamCredits: await other.getCredits(),
  models: (await gateway.getAvailableModels()).models,
  errors,
}));
